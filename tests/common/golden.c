/* The score model's golden cases (tests/common/golden.h). */
#include "golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint64_t ppt_golden_sequence_seeds[3] = {9, 27, 37};

void ppt_golden_config(ppd_score_config *c) {
    ppd_score_config_default(c);
    c->ns = 8;
    c->nv = 3;
    c->layers = 4;
    c->lm_dim = 16;
    c->chunk_edges = 1000;
}

float *ppt_tensor_f32(const ppd_tensor_file *f, const char *name, int64_t *numel) {
    const ppd_tensor *t = ppd_tensor_file_find(f, name);
    if (!t) {
        ppd_fail(PPD_ERR_FORMAT, "golden tensor %s missing", name);
        return NULL;
    }
    float *d = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (!d || ppd_tensor_to_f32(t, d) != PPD_OK) {
        free(d);
        return NULL;
    }
    if (numel) *numel = t->numel;
    return d;
}

int64_t *ppt_tensor_i64(const ppd_tensor_file *f, const char *name, int64_t *numel) {
    const ppd_tensor *t = ppd_tensor_file_find(f, name);
    if (!t || t->dtype != PPD_TF_I64 || !t->contiguous) {
        ppd_fail(PPD_ERR_FORMAT, "golden tensor %s missing or not contiguous int64", name);
        return NULL;
    }
    int64_t *d = malloc(sizeof(int64_t) * (size_t)(t->numel ? t->numel : 1));
    if (!d) return NULL;
    memcpy(d, t->data, sizeof(int64_t) * (size_t)t->numel);
    if (numel) *numel = t->numel;
    return d;
}

ppd_status ppt_golden_case_load(ppt_golden_case *gc, const char *dir, const char *name) {
    memset(gc, 0, sizeof *gc);
    char file[4096];
    snprintf(file, sizeof file, "%s/case_%s.pt", dir, name);
    PPD_TRY(ppd_tensor_file_open(file, &gc->f));
    int64_t nr = 0, nl = 0, er = 0, el = 0, B = 0;
    gc->rec_pos = ppt_tensor_f32(gc->f, "rec_pos", &nr);
    gc->lig_pos = ppt_tensor_f32(gc->f, "lig_pos", &nl);
    gc->rec_x = ppt_tensor_f32(gc->f, "rec_x", NULL);
    gc->lig_x = ppt_tensor_f32(gc->f, "lig_x", NULL);
    gc->t = ppt_tensor_f32(gc->f, "t", &B);
    gc->rot_norm = ppt_tensor_f32(gc->f, "rot_norm", NULL);
    gc->rec_batch = ppt_tensor_i64(gc->f, "rec_batch", NULL);
    gc->lig_batch = ppt_tensor_i64(gc->f, "lig_batch", NULL);
    gc->rec_ei = ppt_tensor_i64(gc->f, "rec_edge_index", &er);
    gc->lig_ei = ppt_tensor_i64(gc->f, "lig_edge_index", &el);
    if (!gc->rec_pos || !gc->lig_pos || !gc->rec_x || !gc->lig_x || !gc->t || !gc->rot_norm ||
        !gc->rec_batch || !gc->lig_batch || !gc->rec_ei || !gc->lig_ei)
        return ppd_fail(PPD_ERR_FORMAT, "%s: %s", file, ppd_errmsg());
    er /= 2;
    el /= 2;
    gc->b = (ppd_score_batch){.B = (int)B,
                              .Nr = nr / 3,
                              .Nl = nl / 3,
                              .Er = er,
                              .El = el,
                              .rec_pos = gc->rec_pos,
                              .lig_pos = gc->lig_pos,
                              .rec_x = gc->rec_x,
                              .lig_x = gc->lig_x,
                              .rec_batch = gc->rec_batch,
                              .lig_batch = gc->lig_batch,
                              .rec_src = gc->rec_ei,
                              .rec_dst = gc->rec_ei + er,
                              .lig_src = gc->lig_ei,
                              .lig_dst = gc->lig_ei + el,
                              .t = gc->t,
                              .rot_norm = gc->rot_norm};
    return PPD_OK;
}

void ppt_golden_case_free(ppt_golden_case *gc) {
    free(gc->rec_pos), free(gc->lig_pos), free(gc->rec_x), free(gc->lig_x), free(gc->t);
    free(gc->rot_norm), free(gc->rec_batch), free(gc->lig_batch), free(gc->rec_ei);
    free(gc->lig_ei);
    if (gc->f) ppd_tensor_file_close(gc->f);
    memset(gc, 0, sizeof *gc);
}

static ppd_status copy_entry(const ppd_tensor_file *f, const char *file, const char *name,
                             const ppd_param_entry *e, float *dst) {
    char full[128];
    snprintf(full, sizeof full, "model.%s", name);
    const ppd_tensor *t = ppd_tensor_file_find(f, full);
    if (!t || t->numel != (int64_t)e->numel)
        return ppd_fail(PPD_ERR_FORMAT, "%s: %s missing or of another size", file, full);
    return ppd_tensor_to_f32(t, dst + e->offset);
}

ppd_status ppt_golden_weights_load(ppd_score_model *m, const char *dir) {
    char file[4096];
    snprintf(file, sizeof file, "%s/model.pth", dir);
    ppd_tensor_file *f;
    PPD_TRY(ppd_tensor_file_open(file, &f));
    ppd_status s = PPD_OK;
    for (int i = 0; !s && i < m->ntensors; i++)
        s = copy_entry(f, file, m->tab[i].name, &m->tab[i], m->params);
    for (int i = 0; !s && i < m->nbuffers; i++)
        s = copy_entry(f, file, m->btab[i].name, &m->btab[i], m->buffers);
    ppd_tensor_file_close(f);
    return s;
}

double ppt_golden_loss(const ppt_golden_case *gc, const float *tr, const float *rot, float *dtr,
                       float *drot, double *ltr_out, double *lrot_out) {
    int B = gc->b.B;
    float *ts = ppt_tensor_f32(gc->f, "tr_score", NULL),
          *rs = ppt_tensor_f32(gc->f, "rot_score", NULL);
    double ltr = 0, lrot = 0;
    for (int g = 0; ts && rs && g < B; g++) {
        float t = gc->t[g];
        float a = powf(0.01f, 1.0f - t), bb = powf(30.0f, t), sig = a * bb;
        double s2 = (double)sig * sig, den = (double)gc->rot_norm[g] + 1e-5;
        for (int k = 0; k < 3; k++) {
            double et = (double)tr[3 * g + k] - ts[3 * g + k];
            double er = ((double)rot[3 * g + k] - rs[3 * g + k]) / den;
            ltr += et * et * s2;
            lrot += er * er;
            dtr[3 * g + k] = (float)(0.5 * 2 * et * s2 / (3.0 * B));
            drot[3 * g + k] = (float)(0.5 * 2 * er / den / (3.0 * B));
        }
    }
    free(ts), free(rs);
    *ltr_out = ltr / (3.0 * B);
    *lrot_out = lrot / (3.0 * B);
    return 0.5 * *ltr_out + 0.5 * *lrot_out;
}

double ppt_rel_err(const float *a, const float *b, int64_t n, double floor) {
    double d = 0, s = floor;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (isnan(e)) return INFINITY; /* fmax would drop it: a NaN must fail any tolerance */
        d = fmax(d, e);
        s = fmax(s, fabs((double)b[i]));
    }
    return d / s;
}
