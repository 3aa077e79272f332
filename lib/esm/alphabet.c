/* The ESM-2 alphabet and tokenizer (spec esm2.md §1; see ppdock/esm.h). */
#include "ppdock/esm.h"

static const char *const tok_names[PPD_ESM_VOCAB] = {
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E",        "R",
    "T",     "I",     "D",     "P",     "K", "Q", "N", "F", "Y", "M",        "H",
    "W",     "C",     "X",     "B",     "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
};

const char *ppd_esm_token_name(int id) {
    return id >= 0 && id < PPD_ESM_VOCAB ? tok_names[id] : NULL;
}

int ppd_esm_residue_token(int c) {
    /* The 25 residue letters take ids 4..28 in the order LAGVSERTIDPKQNFYMHWC XBUZO. */
    static const char letters[] = "LAGVSERTIDPKQNFYMHWCXBUZO";
    if (c < 'A' || c > 'Z') return -1;
    for (int i = 0; letters[i]; i++)
        if (letters[i] == c) return 4 + i;
    return -1;
}

ppd_status ppd_esm_tokenize(const char *seq, size_t n, ppd_esm_unknown_policy policy, uint8_t *ids,
                            size_t *n_unknown) {
    size_t unknown = 0;
    for (size_t i = 0; i < n; i++) {
        int t = ppd_esm_residue_token((unsigned char)seq[i]);
        if (t < 0) {
            unsigned char c = (unsigned char)seq[i];
            if (policy == PPD_ESM_UNKNOWN_ERROR) {
                if (n_unknown) *n_unknown = unknown;
                if (c >= 0x21 && c < 0x7f)
                    return ppd_fail(PPD_ERR_FORMAT,
                                    "sequence position %zu: '%c' is not an ESM residue letter "
                                    "(LAGVSERTIDPKQNFYMHWCXBUZO)",
                                    i + 1, c);
                return ppd_fail(PPD_ERR_FORMAT,
                                "sequence position %zu: byte 0x%02x is not an ESM residue letter "
                                "(LAGVSERTIDPKQNFYMHWCXBUZO)",
                                i + 1, c);
            }
            t = policy == PPD_ESM_UNKNOWN_AS_UNK ? PPD_ESM_TOK_UNK : PPD_ESM_TOK_X;
            unknown++;
        }
        ids[i] = (uint8_t)t;
    }
    if (n_unknown) *n_unknown = unknown;
    return PPD_OK;
}

ppd_status ppd_esm_check_tokens(const uint8_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < PPD_ESM_TOK_UNK || ids[i] >= PPD_ESM_VOCAB)
            return ppd_fail(PPD_ERR_FORMAT,
                            "residue %zu: token id %u is not a residue token (3..32)%s%s", i + 1,
                            ids[i], ids[i] < PPD_ESM_TOK_UNK ? ": " : "",
                            ids[i] < PPD_ESM_TOK_UNK ? tok_names[ids[i]] : "");
    return PPD_OK;
}
