#include "gw_core.h"

int gw_native_abi(void) { return GW_NATIVE_ABI; }

const char *gw_status_name(int status) {
    switch (status) {
    case GW_OK: return "ok";
    case GW_ERR_NOMEM: return "out of memory";
    case GW_ERR_INVALID: return "invalid argument";
    case GW_ERR_OVERFLOW: return "capacity exceeded";
    case GW_ERR_NOT_FOUND: return "not found";
    case GW_ERR_STATE: return "wrong state";
    case GW_ERR_SYSTEM: return "system call failed";
    default: return "unknown status";
    }
}
