/* The score model's gather/scatter glue, CPU reference (ppdock/graph_ops.h). */
#include "ppdock/graph_ops.h"

#include "ppdock/kernels/gaussian_smearing.h"
#include "ppdock/kernels/graph_ops.h"
#include "ppdock/kernels/score_heads.h"

#include <string.h>

void ppd_gather_concat3_forward(float *A, const float *emb, const float *hA, const int64_t *first,
                                int dA, const float *hB, const int64_t *second, int dB, int64_t e0,
                                int64_t n, int ns) {
    // A: (n, 3 ns)   emb: (E, ns)   hA: (NA, dA)   hB: (NB, dB)
    for (int64_t i = 0; i < n; i++) {
        int64_t e = e0 + i;
        float *a = A + i * 3 * ns;
        memcpy(a, emb + e * ns, sizeof(float) * (size_t)ns);
        memcpy(a + ns, hA + first[e] * dA, sizeof(float) * (size_t)ns);
        memcpy(a + 2 * ns, hB + second[e] * dB, sizeof(float) * (size_t)ns);
    }
}

void ppd_gather_concat3_backward(float *demb, float *dhA, int dA, float *dhB, int dB,
                                 const float *g, const int64_t *first, const int64_t *second,
                                 int64_t e0, int64_t n, int ns) {
    // g: (n, 3 ns)   demb: (E, ns)   dhA: (NA, dA)   dhB: (NB, dB)
    for (int64_t i = 0; i < n; i++) {
        int64_t e = e0 + i;
        const float *gi = g + i * 3 * ns;
        float *de = demb + e * ns, *ga = dhA + first[e] * dA, *gb = dhB + second[e] * dB;
        for (int k = 0; k < ns; k++) {
            de[k] += gi[k];
            ga[k] += gi[ns + k];
            gb[k] += gi[2 * ns + k];
        }
    }
}

void ppd_scatter_mean_grad(float *dmsg, const float *dU, const float *cnt, const int64_t *recv,
                           int64_t e0, int64_t n, int dout) {
    // dmsg: (n, dout)   dU: (N, dout)   cnt: (N)
    for (int64_t i = 0; i < n; i++) {
        int64_t r = recv[e0 + i];
        for (int k = 0; k < dout; k++)
            dmsg[i * dout + k] = ppd_scatter_mean_grad_elem(dU[r * dout + k], cnt[r]);
    }
}

void ppd_update_nodes_forward(float *hn, const float *h, int64_t N, int din, int dout,
                              const float *yi, const float *yc) {
    // hn, yi, yc: (N, dout)   h: (N, din)
    for (int64_t n = 0; n < N; n++)
        for (int k = 0; k < dout; k++) {
            float base = k < din ? h[n * din + k] : 0.0f;
            hn[n * dout + k] = ppd_update_node_elem(base, yi[n * dout + k], yc[n * dout + k]);
        }
}

void ppd_degrees_forward(float *cnt, const int64_t *recv, int64_t E, int64_t N) {
    for (int64_t n = 0; n < N; n++) cnt[n] = 0.0f;
    for (int64_t e = 0; e < E; e++) cnt[recv[e]] += 1.0f;
    for (int64_t n = 0; n < N; n++)
        if (cnt[n] < 1.0f) cnt[n] = 1.0f;
}

void ppd_add_table_rows(float *x, const float *table, const int64_t *idx, int64_t N, int d) {
    // x: (N, d)   table: (rows, d)
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < d; j++) x[n * d + j] = table[idx[n] * d + j] + x[n * d + j];
}

void ppd_edge_raw_forward(float *raw, const float *vec, const float *temb, const int64_t *tnode,
                          const float *off, float gamma, int D, int gauss_first, int64_t E) {
    // raw: (E, 32 + D)   vec: (E, 3)   temb: (nodes, 32)   off: (D)
    enum { TD = 32 };
    int R = TD + D;
    for (int64_t e = 0; e < E; e++) {
        float d = ppd_edge_length(vec + 3 * e);
        float *row = raw + e * R;
        float *g = row + (gauss_first ? 0 : TD), *t = row + (gauss_first ? D : 0);
        for (int k = 0; k < D; k++) g[k] = ppd_gaussian_smearing_elem(d, off[k], gamma);
        memcpy(t, temb + tnode[e] * TD, sizeof(float) * TD);
    }
}

void ppd_gather_rows(float *dst, int ldd, const float *src, int lds, const int64_t *idx, int64_t e0,
                     int64_t n, int w) {
    for (int64_t i = 0; i < n; i++) {
        int64_t r = idx ? idx[e0 + i] : e0 + i;
        memcpy(dst + i * ldd, src + r * lds, sizeof(float) * (size_t)w);
    }
}

void ppd_add_rows(float *dst, int ldd, const float *src, int lds, int64_t n, int w) {
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < w; j++) dst[i * ldd + j] += src[i * lds + j];
}

void ppd_scatter_mean_forward(float *acc, const float *cnt, int64_t N, int d) {
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < d; j++) acc[n * d + j] /= cnt[n];
}

void ppd_head_input_forward(float *vec, float *rho, float *head_in, const float *z,
                            const float *temb, int B, int w) {
    for (int g = 0; g < B; g++)
        ppd_head_input_elem(z + 12 * g, temb + 32 * g, w, vec + 3 * g, rho + g, head_in + 33 * g);
}

void ppd_head_pred_forward(float *pred, float *scale, const float *vec, const float *rho,
                           const float *mag, const float *sig, const float *norm, int B,
                           int by_sigma, int by_norm) {
    for (int g = 0; g < B; g++)
        ppd_head_pred_elem(vec + 3 * g, rho[g], mag[g], by_sigma ? sig[g] : 1.0f,
                           by_norm ? norm[g] : 1.0f, by_sigma, by_norm, pred + 3 * g, scale + g);
}

void ppd_head_mag_backward(float *dmag, const float *dpred, const float *vec, const float *rho,
                           const float *scale, int B) {
    for (int g = 0; g < B; g++)
        dmag[g] = ppd_head_mag_grad_elem(dpred + 3 * g, vec + 3 * g, rho[g], scale[g]);
}

void ppd_head_input_backward(float *dz, const float *dpred, const float *vec, const float *rho,
                             const float *scale, const float *mag, const float *dhead_in, int B,
                             int w) {
    for (int g = 0; g < B; g++) {
        float dv[3];
        ppd_head_vec_grad_elem(dpred + 3 * g, vec + 3 * g, rho[g], scale[g], mag[g],
                               dhead_in[33 * g], dv);
        for (int k = 0; k < 3; k++) dz[12 * g + 3 * w + k] = dz[12 * g + 6 + 3 * w + k] = dv[k];
    }
}
