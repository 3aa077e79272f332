/* ppdock/kernels/score_heads.h — per-complex bodies of the score model's magnitude heads (spec
 * §3.7 steps 4-5), shared by the CPU ops (lib/nn/graph_ops.c) and their CUDA twins
 * (lib/nn/cuda/graph_ops.cu), DESIGN.md rule 5.
 *
 * The head of one complex: v = z[3w .. 3w+3) + z[6+3w .. 6+3w+3) (w = 0 translation, 1
 * rotation), ρ = |v|, m = H([ρ, emb(t)]) (the MLP runs outside), pred = v/ρ · m, then ÷ σ_tr(t)
 * (translation) or × N(σ_rot(t)) (rotation) when the model scales by σ.
 * The backward bodies sum in double, as the CPU reference always did; PPD_DMUL keeps those
 * products rounded (no FMA) on the GPU too. They run once per complex: the cost is nothing.
 */
#ifndef PPDOCK_KERNELS_SCORE_HEADS_H
#define PPDOCK_KERNELS_SCORE_HEADS_H

#include "ppdock/kernels/graph_ops.h"
#include "ppdock/kernels/hd.h"

#ifdef __CUDA_ARCH__
#define PPD_DMUL(a, b) __dmul_rn((a), (b))
#else
#define PPD_DMUL(a, b) ((a) * (b))
#endif

/* v (3) and ρ of head w from the complex's 12 pooled outputs z; in_row = [ρ, temb (32)] */
static inline PPD_HD void ppd_head_input_elem(const float *z, const float *temb, int w, float *v,
                                              float *rho, float *in_row) {
    for (int k = 0; k < 3; k++) v[k] = z[3 * w + k] + z[6 + 3 * w + k];
    *rho = ppd_edge_length(v);
    in_row[0] = *rho;
    for (int k = 0; k < 32; k++) in_row[1 + k] = temb[k];
}

/* pred (3) and the scale used (1/σ, N, or 1) from v, ρ and the MLP's magnitude m */
static inline PPD_HD void ppd_head_pred_elem(const float *v, float rho, float mag, float sig,
                                             float norm, int by_sigma, int by_norm, float *pred,
                                             float *scale) {
    *scale = by_sigma ? 1.0f / sig : by_norm ? norm : 1.0f;
    for (int k = 0; k < 3; k++) {
        float u = v[k] / rho;
        float p = PPD_MUL(u, mag);
        if (by_sigma) p = p / sig;
        if (by_norm) p = PPD_MUL(p, norm);
        pred[k] = p;
    }
}

/* dL/dm = Σ_k dpred[k] · (v[k]/ρ) · scale */
static inline PPD_HD float ppd_head_mag_grad_elem(const float *dpred, const float *v, float rho,
                                                  float scale) {
    double dm = 0;
    for (int k = 0; k < 3; k++)
        dm = dm + PPD_DMUL(PPD_DMUL((double)dpred[k], (double)(v[k] / rho)), (double)scale);
    return (float)dm;
}

/* dL/dv (3) from dpred, the magnitude m and dL/dρ (the MLP input's first column); it goes to
 * both halves of z that formed v */
static inline PPD_HD void ppd_head_vec_grad_elem(const float *dpred, const float *v, float rho,
                                                 float scale, float mag, float drho_f, float *dv) {
    double u[3], du[3], udu = 0, drho = drho_f;
    for (int k = 0; k < 3; k++) {
        u[k] = (double)(v[k] / rho);
        du[k] = PPD_DMUL(PPD_DMUL((double)dpred[k], (double)mag), (double)scale);
        udu = udu + PPD_DMUL(u[k], du[k]);
    }
    for (int k = 0; k < 3; k++) {
        double a = du[k] / rho, b = PPD_DMUL(u[k], udu) / rho, c = PPD_DMUL(u[k], drho);
        dv[k] = (float)((a - b) + c);
    }
}

#endif
