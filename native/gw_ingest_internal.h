/* Internal to the native ingest: the request decoder shared by gw_ingest.c and
 * gw_ingest_decode.c. Not exported through cffi. */
#ifndef GW_INGEST_INTERNAL_H
#define GW_INGEST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "gw_scoring.h"

/* Decode one ingest request body; 0 or a wire error code (gw_ingest.h). ids/id_lens get
 * each transaction's tx_id (pointers into body); at most `cap` transactions are kept. */
int gw_ingest_decode_request(const uint8_t *body, size_t len, int *kind, uint64_t *rid,
                             uint32_t *n_txs, struct gw_tx *txs, const char **ids,
                             uint16_t *id_lens, uint32_t cap);

#endif
