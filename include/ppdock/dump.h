/* ppdock/dump.h — one record as JSON, for debugging a stage by hand (cache-check --dump).
 *
 * Graph records:
 *   {"key": "1A2K", "type": "graph", "split": "train", "center": [x, y, z],
 *    "inputs_digest": "<16 hex>", "params_hash": "<16 hex>",
 *    "receptor": {"num_nodes": N, "num_edges": E, "sequence": "MKV...",
 *                 "tokens": [...], "pos": [[x, y, z], ...] (receptor-centred),
 *                 "edge_index": [[sources...], [destinations...]],
 *                 "chain": "AAB...", "resnum": [...], "icode": "   ...", "resname": ["MET", ...]},
 *    "ligand": {... same ...}}
 * Other record types: the header and each array's name, dtype and shape.
 * Floats are printed with %.9g, enough to round-trip float32.
 */
#ifndef PPDOCK_DUMP_H
#define PPDOCK_DUMP_H

#include <stdio.h>

#include "ppdock/record.h"
#include "ppdock/status.h"

ppd_status ppd_record_write_json(FILE *f, const char *key, const ppd_rec_view *v);

#endif
