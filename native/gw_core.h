/* Shared definitions of the native library: status codes and version. */
#ifndef GW_CORE_H
#define GW_CORE_H

#include <stddef.h>
#include <stdint.h>

/* Every native entry point returns one of these (0 is success, negatives are errors).
 * gateway/_native.py maps each to a typed Python exception. Keep in sync with core.cdef. */
enum gw_status {
    GW_OK = 0,
    GW_ERR_NOMEM = -1,      /* allocation failed */
    GW_ERR_INVALID = -2,    /* argument out of range or inconsistent */
    GW_ERR_OVERFLOW = -3,   /* a bounded buffer or table is full */
    GW_ERR_NOT_FOUND = -4,  /* key not present */
    GW_ERR_STATE = -5,      /* object in the wrong state for this call */
    GW_ERR_SYSTEM = -6      /* an OS call failed; errno is kept */
};

/* Version of the native ABI; bumped when a declaration in a .cdef file changes. */
#define GW_NATIVE_ABI 2

int gw_native_abi(void);
const char *gw_status_name(int status);

#endif
