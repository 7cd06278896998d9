#include "gw_zmq.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

static struct gw_zmq_api api;
static _Atomic(const struct gw_zmq_api *) api_ready;
static pthread_mutex_t api_lock = PTHREAD_MUTEX_INITIALIZER;

const struct gw_zmq_api *gw_zmq(void) {
    return atomic_load_explicit(&api_ready, memory_order_acquire);
}

#define RESOLVE(field, name)                              \
    do {                                                  \
        *(void **)(&t.field) = dlsym(h, name);            \
        if (!t.field) goto missing;                       \
    } while (0)

int gw_zmq_load(const char *path) {
    if (gw_zmq()) return GW_OK;
    if (!path) return GW_ERR_INVALID;
    pthread_mutex_lock(&api_lock);
    if (gw_zmq()) {
        pthread_mutex_unlock(&api_lock);
        return GW_OK;
    }
    /* RTLD_NOLOAD: never load a second copy; we must share pyzmq's. The handle is kept
     * open for the life of the process (pyzmq never unloads libzmq either). */
    void *h = dlopen(path, RTLD_NOLOAD | RTLD_NOW);
    if (!h) {
        pthread_mutex_unlock(&api_lock);
        return GW_ERR_NOT_FOUND;
    }
    struct gw_zmq_api t;
    RESOLVE(msg_init, "zmq_msg_init");
    RESOLVE(msg_init_size, "zmq_msg_init_size");
    RESOLVE(msg_recv, "zmq_msg_recv");
    RESOLVE(msg_send, "zmq_msg_send");
    RESOLVE(msg_close, "zmq_msg_close");
    RESOLVE(msg_data, "zmq_msg_data");
    RESOLVE(msg_size, "zmq_msg_size");
    RESOLVE(msg_more, "zmq_msg_more");
    RESOLVE(send, "zmq_send");
    RESOLVE(poll, "zmq_poll");
    RESOLVE(getsockopt, "zmq_getsockopt");
    RESOLVE(setsockopt, "zmq_setsockopt");
    RESOLVE(errno_, "zmq_errno");
    RESOLVE(ctx_new, "zmq_ctx_new");
    RESOLVE(ctx_term, "zmq_ctx_term");
    RESOLVE(socket, "zmq_socket");
    RESOLVE(close, "zmq_close");
    RESOLVE(connect, "zmq_connect");
    RESOLVE(strerror, "zmq_strerror");
    api = t;
    atomic_store_explicit(&api_ready, &api, memory_order_release);
    pthread_mutex_unlock(&api_lock);
    return GW_OK;
missing:
    dlclose(h);
    pthread_mutex_unlock(&api_lock);
    return GW_ERR_NOT_FOUND;
}
