/* ppdock/kernels/tp.h — the float32 per-edge tensor product bodies (ppdock/tp.h), shared by the
 * CPU loops in lib/dock/tp.c and the CUDA kernels. See kernels/tp_body.h for the arithmetic. */
#ifndef PPDOCK_KERNELS_TP_H
#define PPDOCK_KERNELS_TP_H

#include "ppdock/kernels/hd.h"
#include "ppdock/tp.h"

#define PPD_TP_REAL     float
#define PPD_TP_FN(name) name
#include "ppdock/kernels/tp_body.h"
#undef PPD_TP_REAL
#undef PPD_TP_FN

#endif
