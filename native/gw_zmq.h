/* libzmq resolved at run time from the copy pyzmq already loaded into this process.
 *
 * pyzmq wheels ship libzmq inside site-packages (pyzmq.libs/libzmq-*.so). Python finds
 * that path (/proc/self/maps) and hands it to gw_zmq_load, which opens it with
 * RTLD_NOLOAD (the library must already be mapped: we share pyzmq's copy, its contexts
 * and sockets) and resolves the few functions the native ingest and the load generator
 * use. No zmq.h is needed at build time: the prototypes and constants below are the
 * stable libzmq 4.x C ABI.
 */
#ifndef GW_ZMQ_H
#define GW_ZMQ_H

#include <stddef.h>
#include <stdint.h>

#include "gw_core.h"

#define GWZ_DONTWAIT 1
#define GWZ_SNDMORE 2
#define GWZ_POLLIN 1
#define GWZ_POLLOUT 2
#define GWZ_PUSH 8
#define GWZ_PULL 7
#define GWZ_DEALER 5
#define GWZ_ROUTER 6
#define GWZ_LINGER 17
#define GWZ_RCVMORE 13
#define GWZ_FD 14
#define GWZ_EVENTS 15
#define GWZ_SNDHWM 23
#define GWZ_RCVHWM 24
#define GWZ_MAXMSGSIZE 22
#define GWZ_IMMEDIATE 39
#define GWZ_HAUSNUMERO 156384712
#define GWZ_ETERM (GWZ_HAUSNUMERO + 53)

typedef struct gwz_msg { _Alignas(8) unsigned char _[64]; } gwz_msg_t;
typedef struct gwz_pollitem {
    void *socket;
    int fd;
    short events;
    short revents;
} gwz_pollitem_t;

struct gw_zmq_api {
    int (*msg_init)(gwz_msg_t *);
    int (*msg_init_size)(gwz_msg_t *, size_t);
    int (*msg_recv)(gwz_msg_t *, void *, int);
    int (*msg_send)(gwz_msg_t *, void *, int);
    int (*msg_close)(gwz_msg_t *);
    void *(*msg_data)(gwz_msg_t *);
    size_t (*msg_size)(const gwz_msg_t *);
    int (*msg_more)(const gwz_msg_t *);
    int (*send)(void *, const void *, size_t, int);
    int (*poll)(gwz_pollitem_t *, int, long);
    int (*getsockopt)(void *, int, void *, size_t *);
    int (*setsockopt)(void *, int, const void *, size_t);
    int (*errno_)(void);
    void *(*ctx_new)(void);
    int (*ctx_term)(void *);
    void *(*socket)(void *, int);
    int (*close)(void *);
    int (*connect)(void *, const char *);
    const char *(*strerror)(int);
};

/* Resolve the table from an already loaded libzmq; GW_ERR_NOT_FOUND if the library is
 * not mapped in this process or lacks a symbol. Idempotent and thread-safe. */
int gw_zmq_load(const char *libzmq_path);
/* The resolved table, or NULL before a successful gw_zmq_load. */
const struct gw_zmq_api *gw_zmq(void);

#endif
