/* Config: the settings table, YAML loading (both DiffDock-PP shapes), --set, canonical text and
 * the YAML writer. Inputs are in tests/data/config/ (DiffDock-PP's own files under diffdock-pp/)
 * and config/. */
#include "../test.h"

#include "ppdock/config.h"
#include "ppdock/fsutil.h"
#include "ppdock/status.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static ppd_config *fresh(void) {
    ppd_config *cfg = NULL;
    if (ppd_config_new(&cfg) != PPD_OK) {
        fprintf(stderr, "ppd_config_new: %s\n", ppd_errmsg());
        exit(2);
    }
    return cfg;
}

static const char *cfgdata(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s", ppt_data(name));
    return path;
}

/* Load one file from tests/data/config into a fresh config; NULL (and a test failure) if it
 * does not load. */
static ppd_config *load_ok(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s", cfgdata(rel));
    ppd_config *cfg = fresh();
    if (ppd_config_load(cfg, path) != PPD_OK) {
        ppt_fail(__FILE__, __LINE__, "loading %s: %s", path, ppd_errmsg());
        ppd_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Load a file that must fail; returns the status. */
static ppd_status load_status(const char *path) {
    ppd_config *cfg = fresh();
    ppd_status st = ppd_config_load(cfg, path);
    ppd_config_free(cfg);
    return st;
}

static const char *write_tmp(const char *dir, const char *name, const char *text) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *const diffdock_files[] = {
    "config/diffdock-pp/db5_esm.yaml",
    "config/diffdock-pp/dips_esm.yaml",
    "config/diffdock-pp/db5_esm_inference.yaml",
    "config/diffdock-pp/single_pair_inference.yaml",
    "config/diffdock-pp/large_model_dips.args.yaml",
    "config/diffdock-pp/confidence_model_dips/args.yaml",
};

/* ---- the table ------------------------------------------------------------------------------ */

TEST(config_table_is_well_formed) {
    size_t n;
    const ppd_config_setting *t = ppd_config_table(&n);
    REQUIRE(n > 100);
    for (size_t k = 0; k < n; k++) {
        const char *dot = strchr(t[k].name, '.');
        if (!dot || dot == t[k].name || !dot[1] || strchr(dot + 1, '.'))
            ppt_fail(__FILE__, __LINE__, "bad name '%s'", t[k].name);
        if (!t[k].help || !*t[k].help) ppt_fail(__FILE__, __LINE__, "%s has no help", t[k].name);
        if (t[k].type == PPD_CFG_INT && t[k].imin > t[k].imax)
            ppt_fail(__FILE__, __LINE__, "%s: empty range", t[k].name);
        if (t[k].type == PPD_CFG_FLOAT && !(t[k].fmin <= t[k].fmax))
            ppt_fail(__FILE__, __LINE__, "%s: empty range", t[k].name);
        if (t[k].type == PPD_CFG_ENUM && (!t[k].choices || !*t[k].choices))
            ppt_fail(__FILE__, __LINE__, "%s: no choices", t[k].name);
        CHECK(ppd_config_lookup(t[k].name) == &t[k]);
        /* sections are contiguous, so the writers and the docs list each section once */
        size_t slen = (size_t)(dot - t[k].name);
        for (size_t j = 0; j + 1 < k; j++)
            if (!strncmp(t[j].name, t[k].name, slen) && t[j].name[slen] == '.' &&
                strncmp(t[k - 1].name, t[k].name, slen + 1))
                ppt_fail(__FILE__, __LINE__, "section of %s is split", t[k].name);
    }
    CHECK(ppd_config_lookup("knn_size") == ppd_config_lookup("data.knn_size"));
    CHECK(ppd_config_lookup("model.knn_size") == NULL);
    CHECK(ppd_config_lookup("nope") == NULL);
}

TEST(config_inner_names_are_unique) {
    size_t n;
    const ppd_config_setting *t = ppd_config_table(&n);
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++) {
            if (!strcmp(t[a].name, t[b].name))
                ppt_fail(__FILE__, __LINE__, "%s listed twice", t[a].name);
            if (!strcmp(strchr(t[a].name, '.') + 1, strchr(t[b].name, '.') + 1))
                ppt_fail(__FILE__, __LINE__, "%s and %s share an inner-most name", t[a].name,
                         t[b].name);
        }
}

TEST(config_defaults) {
    ppd_config *cfg = fresh();
    CHECK_STR(ppd_config_str(cfg, "data.dataset"), "db5");
    CHECK_STR(ppd_config_str(cfg, "data.data_file"), "datasets/DB5/splits.csv");
    CHECK_STR(ppd_config_str(cfg, "data.data_path"), "datasets/DB5");
    CHECK_STR(ppd_config_str(cfg, "data.resolution"), "residue");
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 20);
    CHECK_EQ(ppd_config_bool(cfg, "data.use_unbound"), 0);
    CHECK_EQ(ppd_config_bool(cfg, "data.no_graph_cache"), 1);
    CHECK_EQ(ppd_config_bool(cfg, "data.use_orientation_features"), 0);
    CHECK_EQ(ppd_config_int(cfg, "data.multiplicity"), 1);
    CHECK_STR(ppd_config_str(cfg, "data.pdb_models"), "all");
    CHECK_EQ(ppd_config_int(cfg, "cache.batch_mb"), 32);
    CHECK_EQ(ppd_config_int(cfg, "cache.map_mb"), 1024);
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 16);
    CHECK_EQ(ppd_config_int(cfg, "model.nv"), 4);
    CHECK_EQ(ppd_config_int(cfg, "model.num_conv_layers"), 2);
    CHECK_EQ(ppd_config_int(cfg, "model.lm_embed_dim"), 0);
    CHECK_NEAR(ppd_config_float(cfg, "model.dropout"), 0.1, 0);
    CHECK_NEAR(ppd_config_float(cfg, "train.lr"), 1e-4, 0);
    CHECK_NEAR(ppd_config_float(cfg, "train.weight_decay"), 1e-6, 0);
    CHECK_EQ(ppd_config_int(cfg, "train.num_steps"), 20);
    CHECK_NEAR(ppd_config_float(cfg, "diffusion.tr_s_min"), 0.1, 0);
    CHECK_NEAR(ppd_config_float(cfg, "diffusion.rot_s_max"), 1.65, 0);
    CHECK_NEAR(ppd_config_float(cfg, "inference.temp_sampling"), 1.0, 0);
    CHECK(ppd_config_is_null(cfg, "train.checkpoint_path"));
    CHECK(ppd_config_str(cfg, "train.checkpoint_path") == NULL);
    CHECK(ppd_config_is_null(cfg, "inference.num_samples"));
    CHECK_EQ(ppd_config_int(cfg, "inference.num_samples"), 0); /* null numbers read as 0 */
    CHECK_STR(ppd_config_str(cfg, "log.tuned_param"), "");     /* "" is a string, not null */
    CHECK(!ppd_config_is_null(cfg, "log.tuned_param"));
    CHECK_STR(ppd_config_origin(cfg, "data.knn_size"), "default");
    CHECK_EQ(ppd_config_warnings(cfg), 0);
    CHECK_STR(ppd_config_last_warning(cfg), "");
    ppd_config_free(cfg);
}

/* ---- DiffDock-PP's files and ppdock's configs ------------------------------------------------ */

TEST(config_diffdock_files_load_without_warnings) {
    for (size_t i = 0; i < sizeof diffdock_files / sizeof diffdock_files[0]; i++) {
        ppd_config *cfg = load_ok(diffdock_files[i]);
        if (!cfg) continue;
        if (ppd_config_warnings(cfg))
            ppt_fail(__FILE__, __LINE__, "%s: %d warnings, last: %s", diffdock_files[i],
                     ppd_config_warnings(cfg), ppd_config_last_warning(cfg));
        ppd_config_free(cfg);
    }
}

TEST(config_diffdock_values) {
    ppd_config *cfg = load_ok("config/diffdock-pp/large_model_dips.args.yaml");
    REQUIRE(cfg);
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 32);
    CHECK_EQ(ppd_config_int(cfg, "model.nv"), 6);
    CHECK_EQ(ppd_config_int(cfg, "model.num_conv_layers"), 4);
    CHECK_EQ(ppd_config_int(cfg, "model.lm_embed_dim"), 1280);
    CHECK_NEAR(ppd_config_float(cfg, "train.lr"), 0.001, 0);
    CHECK_EQ(ppd_config_int(cfg, "train.batch_size"), 16);
    CHECK_NEAR(ppd_config_float(cfg, "model.max_radius"), 30.0, 0);
    CHECK_STR(ppd_config_str(cfg, "data.dataset"), "dips");
    CHECK(ppd_config_is_null(cfg, "train.checkpoint_path"));
    CHECK_STR(ppd_config_str(cfg, "log.tuned_param"), "");
    CHECK_STR(ppd_config_str(cfg, "log.project"), "DiffDock Tuning");
    CHECK_STR(ppd_config_origin(cfg, "model.ns"),
              cfgdata("config/diffdock-pp/large_model_dips.args.yaml:51"));
    ppd_config_free(cfg);

    cfg = load_ok("config/diffdock-pp/dips_esm.yaml");
    REQUIRE(cfg);
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 20);
    CHECK_NEAR(ppd_config_float(cfg, "train.lr"), 1e-3, 0);
    CHECK_STR(ppd_config_str(cfg, "data.data_file"), "datasets/DIPS/data_file.csv"); /* no blank */
    CHECK_STR(ppd_config_str(cfg, "data.data_path"), "datasets/DIPS/pairs_pruned");
    CHECK_NEAR(ppd_config_float(cfg, "model.max_radius"), 5.0, 0);
    CHECK_EQ(ppd_config_bool(cfg, "model.dynamic_max_cross"), 1);
    CHECK_EQ(ppd_config_int(cfg, "diffusion.num_inference_complexes_train_data"), 1200);
    CHECK_STR(ppd_config_origin(cfg, "data.knn_size"),
              cfgdata("config/diffdock-pp/dips_esm.yaml:9"));
    ppd_config_free(cfg);

    cfg = load_ok("config/diffdock-pp/db5_esm.yaml");
    REQUIRE(cfg);
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 32);
    CHECK_NEAR(ppd_config_float(cfg, "train.lr"), 1e-4, 0);
    CHECK_EQ(ppd_config_bool(cfg, "diffusion.sample_train"), 1); /* last line, no newline */
    ppd_config_free(cfg);

    cfg = load_ok("config/diffdock-pp/single_pair_inference.yaml");
    REQUIRE(cfg);
    CHECK_NEAR(ppd_config_float(cfg, "inference.temp_sampling"), 2.439, 0);
    CHECK_NEAR(ppd_config_float(cfg, "inference.temp_sigma_data_rot"), 0.228, 0);
    CHECK_EQ(ppd_config_bool(cfg, "inference.no_final_noise"), 1);
    CHECK_EQ(ppd_config_int(cfg, "train.actual_steps"), 40);
    ppd_config_free(cfg);

    cfg = load_ok("config/diffdock-pp/db5_esm_inference.yaml");
    REQUIRE(cfg);
    CHECK_NEAR(ppd_config_float(cfg, "inference.temp_sampling"), 1.0, 0); /* commented out */
    CHECK_STR(ppd_config_str(cfg, "data.data_file"), "datasets/DB5/splits_test.csv");
    ppd_config_free(cfg);

    cfg = load_ok("config/diffdock-pp/confidence_model_dips/args.yaml");
    REQUIRE(cfg);
    CHECK_EQ(ppd_config_int(cfg, "data.multiplicity"), 10);
    CHECK_EQ(ppd_config_int(cfg, "train.batch_size"), 48);
    CHECK_STR(ppd_config_str(cfg, "log.logger"), "wandb");
    CHECK_NEAR(ppd_config_float(cfg, "confidence.rmsd_classification_cutoff"), 5.0, 0);
    CHECK_STR(ppd_config_str(cfg, "inference.prediction_storage"), "false"); /* a string there */
    ppd_config_free(cfg);
}

TEST(config_ppdock_configs_load_without_warnings) {
    static const char *const files[] = {"config/db5.yaml", "config/finetune_full.yaml",
                                        "config/demo.yaml"};
    ppd_config *cfg[3];
    for (int i = 0; i < 3; i++) {
        cfg[i] = fresh();
        CHECK_OK(ppd_config_load(cfg[i], files[i]));
        if (ppd_config_warnings(cfg[i]))
            ppt_fail(__FILE__, __LINE__, "%s: %s", files[i], ppd_config_last_warning(cfg[i]));
    }
    CHECK_STR(ppd_config_str(cfg[0], "data.data_path"), "datasets/DB5");
    CHECK_STR(ppd_config_str(cfg[0], "data.data_file"), "datasets/DB5/splits.csv");
    CHECK_EQ(ppd_config_int(cfg[0], "model.ns"), 32);
    CHECK_EQ(ppd_config_bool(cfg[0], "data.use_unbound"), 0);

    CHECK_EQ(ppd_config_int(cfg[1], "model.ns"), 32);
    CHECK_EQ(ppd_config_int(cfg[1], "model.nv"), 6);
    CHECK_EQ(ppd_config_int(cfg[1], "model.num_conv_layers"), 4);
    CHECK_EQ(ppd_config_int(cfg[1], "model.lm_embed_dim"), 1280);
    CHECK_NEAR(ppd_config_float(cfg[1], "train.lr"), 1e-4, 0);
    CHECK_EQ(ppd_config_bool(cfg[1], "data.no_graph_cache"), 0);
    CHECK_EQ(ppd_config_int(cfg[1], "cache.batch_mb"), 64);
    CHECK_STR(ppd_config_str(cfg[1], "data.data_path"), "datasets/abag");
    CHECK_STR(ppd_config_str(cfg[1], "data.data_file"), "datasets/abag/splits.csv");

    /* the demo config points at data that ships with the repository */
    CHECK(ppd_dir_exists(ppd_config_str(cfg[2], "data.data_path")));
    CHECK(ppd_file_exists(ppd_config_str(cfg[2], "data.data_file")));
    CHECK(ppd_config_int(cfg[2], "model.ns") < 16);
    for (int i = 0; i < 3; i++) ppd_config_free(cfg[i]);
}

/* ---- diagnostics ---------------------------------------------------------------------------- */

TEST(config_unknown_keys_warn_and_loading_continues) {
    ppd_config *cfg = load_ok("config/unknown_keys.yaml");
    REQUIRE(cfg);
    CHECK_EQ(ppd_config_warnings(cfg), 2);
    char want[4200];
    snprintf(want, sizeof want, "%s:9: unknown key 'extra_list' (ignored)",
             cfgdata("config/unknown_keys.yaml"));
    CHECK_STR(ppd_config_last_warning(cfg), want);
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 12);
    CHECK_STR(ppd_config_str(cfg, "data.resolution"), "atom");
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 8);
    CHECK_EQ(ppd_config_int(cfg, "model.nv"), 3); /* after the skipped list */
    /* warnings add up over loads */
    CHECK_OK(ppd_config_load(cfg, cfgdata("config/unknown_keys.yaml")));
    CHECK_EQ(ppd_config_warnings(cfg), 4);
    ppd_config_free(cfg);
}

TEST(config_wrong_type_names_file_line_setting_and_type) {
    char want[4200];
    CHECK_EQ(load_status(cfgdata("config/bad_int.yaml")), PPD_ERR_CONFIG);
    snprintf(want, sizeof want, "%s:3: data.knn_size: expected an integer in [1, 10000], got 'abc'",
             cfgdata("config/bad_int.yaml"));
    CHECK_STR(ppd_errmsg(), want);

    CHECK_EQ(load_status(cfgdata("config/bad_int_float.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("bad_int_float.yaml:2: data.knn_size: expected an integer");
    CHECK_ERRMSG_HAS("got '20.0'");

    CHECK_EQ(load_status(cfgdata("config/bad_bool.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("bad_bool.yaml:2: data.use_unbound: expected a boolean");
    CHECK_ERRMSG_HAS("'maybe'");

    CHECK_EQ(load_status(cfgdata("config/bad_enum.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("bad_enum.yaml:2: data.resolution: expected one of residue, backbone, atom, "
                     "got 'CA'");

    CHECK_EQ(load_status(cfgdata("config/nonexistent.yaml")), PPD_ERR_IO);
    CHECK_ERRMSG_HAS("nonexistent.yaml");
}

TEST(config_out_of_range) {
    CHECK_EQ(load_status(cfgdata("config/bad_range.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("bad_range.yaml:3: data.knn_size: expected an integer in [1, 10000], got '0'");
    CHECK_EQ(load_status(cfgdata("config/bad_float_range.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS(
        "bad_float_range.yaml:2: model.dropout: expected a number in [0, 1], got '1.5'");
    ppd_config *cfg = fresh();
    CHECK_EQ(ppd_config_set(cfg, "cache.map_mb=16777217"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("[1, 16777216]");
    CHECK_OK(ppd_config_set(cfg, "cache.map_mb=16777216"));
    CHECK_EQ(ppd_config_set(cfg, "cache.batch_mb=4097"), PPD_ERR_CONFIG);
    CHECK_EQ(ppd_config_set(cfg, "data.knn_size=10001"), PPD_ERR_CONFIG);
    CHECK_OK(ppd_config_set(cfg, "data.knn_size=10000"));
    CHECK_EQ(ppd_config_set(cfg, "data.multiplicity=0"), PPD_ERR_CONFIG);
    CHECK_EQ(ppd_config_set(cfg, "data.num_workers=-1"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("expected an integer >= 0");
    ppd_config_free(cfg);
}

TEST(config_integer_spellings) {
    ppd_config *cfg = fresh();
    static const char *const bad[] = {"20.0",
                                      "1e3",
                                      "017",
                                      "0x10",
                                      "",
                                      "2 0",
                                      "20abc",
                                      "9223372036854775808",
                                      "-9223372036854775809",
                                      "1_000",
                                      "--1"};
    char buf[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "train.seed=%s", bad[i]);
        if (ppd_config_set(cfg, buf) != PPD_ERR_CONFIG)
            ppt_fail(__FILE__, __LINE__, "'%s' accepted as an integer", bad[i]);
    }
    CHECK_OK(ppd_config_set(cfg, "train.seed=+7"));
    CHECK_EQ(ppd_config_int(cfg, "train.seed"), 7);
    CHECK_OK(ppd_config_set(cfg, "train.seed=0"));
    CHECK_EQ(ppd_config_int(cfg, "train.seed"), 0);
    CHECK_OK(ppd_config_set(cfg, "train.seed=4294967295"));
    CHECK_EQ(ppd_config_int(cfg, "train.seed"), 4294967295LL);
    CHECK_OK(ppd_config_set(cfg, "data.max_lig_size=9223372036854775807"));
    CHECK_EQ(ppd_config_int(cfg, "data.max_lig_size"), INT64_MAX);
    ppd_config_free(cfg);
}

TEST(config_float_spellings) {
    ppd_config *cfg = fresh();
    static const struct {
        const char *text;
        double v;
    } good[] = {{"1.e-3", 1e-3}, {"30.", 30},       {"5", 5},    {"0.", 0},
                {"-0.0", 0},     {"+2.5E-1", 0.25}, {".5", 0.5}, {"1e-300", 1e-300}};
    char buf[128];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(buf, sizeof buf, "train.score_loss_weight=%s", good[i].text);
        CHECK_OK(ppd_config_set(cfg, buf));
        CHECK_NEAR(ppd_config_float(cfg, "train.score_loss_weight"), good[i].v, 0);
    }
    static const char *const bad[] = {"abc",  "1e999", "nan",  "inf", "-inf",
                                      ".inf", "",      "1.0x", "1,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "train.score_loss_weight=%s", bad[i]);
        if (ppd_config_set(cfg, buf) != PPD_ERR_CONFIG)
            ppt_fail(__FILE__, __LINE__, "'%s' accepted as a number", bad[i]);
    }
    ppd_config_free(cfg);
}

TEST(config_bool_spellings) {
    ppd_config *cfg = fresh();
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO",    "off",   "Off",   "OFF"};
    char buf[128];
    for (size_t i = 0; i < 9; i++) {
        snprintf(buf, sizeof buf, "use_unbound=%s", yes[i]);
        CHECK_OK(ppd_config_set(cfg, buf));
        CHECK_EQ(ppd_config_bool(cfg, "data.use_unbound"), 1);
        snprintf(buf, sizeof buf, "use_unbound=%s", no[i]);
        CHECK_OK(ppd_config_set(cfg, buf));
        CHECK_EQ(ppd_config_bool(cfg, "data.use_unbound"), 0);
    }
    static const char *const bad[] = {"tRuE", "y", "n", "1", "0", "", "null", "yess"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "use_unbound=%s", bad[i]);
        if (ppd_config_set(cfg, buf) != PPD_ERR_CONFIG)
            ppt_fail(__FILE__, __LINE__, "'%s' accepted as a boolean", bad[i]);
    }
    ppd_config_free(cfg);
}

TEST(config_null_rules) {
    ppd_config *cfg = fresh();
    CHECK_OK(ppd_config_set(cfg, "train.checkpoint_path=ckpt/a.pth"));
    CHECK_OK(ppd_config_set(cfg, "inference.num_samples=40"));
    CHECK_OK(ppd_config_set(cfg, "data.max_lig_size=5"));
    CHECK_OK(ppd_config_load(cfg, cfgdata("config/null_ok.yaml")));
    CHECK(ppd_config_is_null(cfg, "train.checkpoint_path"));
    CHECK(ppd_config_is_null(cfg, "inference.num_samples"));
    CHECK(ppd_config_is_null(cfg, "data.max_lig_size"));    /* empty value */
    CHECK_STR(ppd_config_str(cfg, "log.run_name"), "null"); /* quoted: a string */
    CHECK_EQ(ppd_config_warnings(cfg), 0);

    CHECK_EQ(load_status(cfgdata("config/null_bad.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("null_bad.yaml:2: train.lr: expected a number in [0, 1], got null");
    CHECK_EQ(ppd_config_set(cfg, "data.knn_size=null"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("--set data.knn_size: expected an integer in [1, 10000], got null");
    CHECK_EQ(ppd_config_set(cfg, "data.data_path=~"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("expected a string, got null");
    CHECK_OK(ppd_config_set(cfg, "inference.num_samples=~"));
    CHECK(ppd_config_is_null(cfg, "inference.num_samples"));
    ppd_config_free(cfg);
}

TEST(config_duplicate_key_warns_and_later_wins) {
    ppd_config *cfg = load_ok("config/duplicate.yaml");
    REQUIRE(cfg);
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 30);
    CHECK_EQ(ppd_config_warnings(cfg), 1);
    char want[4200];
    snprintf(want, sizeof want,
             "%s:6: duplicate key 'knn_size' (also at line 2); the later value wins",
             cfgdata("config/duplicate.yaml"));
    CHECK_STR(ppd_config_last_warning(cfg), want);
    CHECK_STR(ppd_config_origin(cfg, "data.knn_size"), cfgdata("config/duplicate.yaml:6"));
    ppd_config_free(cfg);

    cfg = load_ok("config/duplicate_section.yaml");
    REQUIRE(cfg);
    CHECK_EQ(ppd_config_warnings(cfg), 1);
    CHECK(strstr(ppd_config_last_warning(cfg), ":5: duplicate section 'data' (also at line 1)"));
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 10);
    CHECK_STR(ppd_config_str(cfg, "data.resolution"), "atom");
    ppd_config_free(cfg);
}

TEST(config_yaml_syntax_error_has_line_and_column) {
    CHECK_EQ(load_status(cfgdata("config/syntax_error.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("syntax_error.yaml:3:3: YAML syntax error: did not find expected key "
                     "(while parsing a block mapping at line 1)");
    /* "resolution: [residue" reads as a sequence value until the parser finds that it never
     * closes: the syntax error, not the wrong type, is reported */
    CHECK_EQ(load_status(cfgdata("config/unclosed_flow.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("unclosed_flow.yaml:4:6: YAML syntax error:");
    CHECK_ERRMSG_HAS("flow sequence at line 3");

    const char *dir = ppt_tmpdir();
    CHECK_EQ(load_status(write_tmp(dir, "tab.yaml", "data:\n  knn_size: 20\n\tns: 8\n")),
             PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("tab.yaml:3:1: YAML syntax error");
    CHECK_EQ(load_status(write_tmp(dir, "latin1.yaml", "data:\n  data_path: caf\xe9\n")),
             PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("latin1.yaml:2: YAML error");
}

TEST(config_sequence_alias_and_shape_errors) {
    CHECK_EQ(load_status(cfgdata("config/sequence_value.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("sequence_value.yaml:2: data.knn_size: expected an integer in [1, 10000], "
                     "got a sequence");
    CHECK_EQ(load_status(cfgdata("config/alias_value.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("alias_value.yaml:3: model.nv:");
    CHECK_ERRMSG_HAS("aliases are not supported");
    CHECK_EQ(load_status(cfgdata("config/two_documents.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("two_documents.yaml:4: more than one YAML document");
    CHECK_EQ(load_status(cfgdata("config/not_a_mapping.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("not_a_mapping.yaml:1: expected a mapping");

    const char *dir = ppt_tmpdir();
    CHECK_EQ(load_status(write_tmp(dir, "map.yaml", "data:\n  knn_size:\n    a: 1\n")),
             PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("map.yaml:2: data.knn_size: expected an integer in [1, 10000], got a mapping");
    CHECK_EQ(load_status(write_tmp(dir, "key.yaml", "? [a, b]\n: 1\n")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("key.yaml:1: a key must be a plain name");
    CHECK_EQ(load_status(write_tmp(dir, "nul.yaml", "data:\n  data_path: \"a\\0b\"\n")),
             PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("nul.yaml:2: data.data_path: value contains a NUL character");

    ppd_config *cfg = load_ok("config/empty.yaml");
    if (cfg) CHECK_EQ(ppd_config_warnings(cfg), 0);
    ppd_config_free(cfg);
    cfg = fresh();
    CHECK_OK(ppd_config_load(cfg, write_tmp(dir, "zero.yaml", "")));
    CHECK_OK(ppd_config_load(cfg, write_tmp(dir, "deep.yaml", "a:\n b:\n  c:\n   ns: 12\n")));
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 12); /* any depth: the inner-most key counts */
    CHECK_OK(ppd_config_load(cfg, cfgdata("config/full_names.yaml")));
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 9);
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 24);
    CHECK_EQ(ppd_config_warnings(cfg), 0);
    ppd_config_free(cfg);
}

TEST(config_error_leaves_config_unchanged) {
    ppd_config *cfg = fresh();
    CHECK_OK(ppd_config_set(cfg, "data.knn_size=5"));
    CHECK_EQ(ppd_config_load(cfg, cfgdata("config/partly_bad.yaml")), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("partly_bad.yaml:6: model.ns: expected an integer in [1, 1024], got 'many'");
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 5);
    CHECK_STR(ppd_config_str(cfg, "data.resolution"), "residue");
    CHECK_STR(ppd_config_origin(cfg, "data.knn_size"), "--set");
    CHECK_STR(ppd_config_origin(cfg, "data.resolution"), "default");
    ppd_config_free(cfg);
}

TEST(config_files_apply_in_order) {
    ppd_config *cfg = fresh();
    CHECK_OK(ppd_config_load(cfg, cfgdata("config/diffdock-pp/large_model_dips.args.yaml")));
    CHECK_OK(ppd_config_load(cfg, cfgdata("config/diffdock-pp/dips_esm.yaml")));
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 16);         /* the later file */
    CHECK_EQ(ppd_config_int(cfg, "train.batch_size"), 16); /* only in the first */
    CHECK_OK(ppd_config_set(cfg, "model.ns=24"));          /* --set after the files */
    CHECK_EQ(ppd_config_int(cfg, "model.ns"), 24);
    CHECK_EQ(ppd_config_warnings(cfg), 0);
    ppd_config_free(cfg);
}

/* ---- --set ---------------------------------------------------------------------------------- */

TEST(config_set_forms_and_errors) {
    ppd_config *cfg = fresh();
    CHECK_OK(ppd_config_set(cfg, "data.knn_size=16"));
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 16);
    CHECK_STR(ppd_config_origin(cfg, "data.knn_size"), "--set");
    CHECK_OK(ppd_config_set(cfg, "knn_size=17"));
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 17);
    CHECK_OK(ppd_config_set(cfg, " knn_size = 18 "));
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 18);
    CHECK_OK(ppd_config_set(cfg, "data.data_path=/scratch/a=b"));
    CHECK_STR(ppd_config_str(cfg, "data.data_path"), "/scratch/a=b");
    CHECK_OK(ppd_config_set(cfg, "resolution=atom"));
    CHECK_STR(ppd_config_str(cfg, "data.resolution"), "atom");
    CHECK_OK(ppd_config_set(cfg, "log.tuned_param="));
    CHECK_STR(ppd_config_str(cfg, "log.tuned_param"), "");
    CHECK_OK(ppd_config_set(cfg, "train.checkpoint_path=x.pth"));
    CHECK_OK(ppd_config_set(cfg, "train.checkpoint_path="));
    CHECK(ppd_config_is_null(cfg, "train.checkpoint_path"));

    CHECK_EQ(ppd_config_set(cfg, "knn_size"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("--set knn_size: expected NAME=VALUE");
    CHECK_EQ(ppd_config_set(cfg, "=5"), PPD_ERR_CONFIG);
    CHECK_EQ(ppd_config_set(cfg, "nope=1"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("--set nope: unknown setting");
    CHECK_EQ(ppd_config_set(cfg, "model.knn_size=5"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("--set model.knn_size: unknown setting (did you mean data.knn_size?)");
    CHECK_EQ(ppd_config_set(cfg, "knn_size=abc"), PPD_ERR_CONFIG);
    CHECK_STR(ppd_errmsg(), "--set data.knn_size: expected an integer in [1, 10000], got 'abc'");
    CHECK_EQ(ppd_config_set(cfg, "data.resolution=CA"), PPD_ERR_CONFIG);
    CHECK_ERRMSG_HAS("--set data.resolution: expected one of residue, backbone, atom, got 'CA'");
    CHECK_EQ(ppd_config_int(cfg, "data.knn_size"), 18); /* failed --set changed nothing */
    CHECK_EQ(ppd_config_warnings(cfg), 0);
    ppd_config_free(cfg);
}

/* ---- getters misuse: a programmer error that aborts ----------------------------------------- */

static int aborts(void (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 2);
        fn();
        _exit(0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return 0;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void get_unknown(void) {
    ppd_config *cfg = fresh();
    (void)ppd_config_int(cfg, "data.knn_sizes");
}
static void get_inner_only(void) {
    ppd_config *cfg = fresh();
    (void)ppd_config_int(cfg, "knn_size");
}
static void get_wrong_type(void) {
    ppd_config *cfg = fresh();
    (void)ppd_config_float(cfg, "data.knn_size");
}
static void get_right(void) {
    ppd_config *cfg = fresh();
    (void)ppd_config_int(cfg, "data.knn_size");
    ppd_config_free(cfg);
}

TEST(config_getter_misuse_aborts) {
    CHECK(aborts(get_unknown));
    CHECK(aborts(get_inner_only));
    CHECK(aborts(get_wrong_type));
    CHECK(!aborts(get_right));
}

/* ---- canonical text and the YAML writer ----------------------------------------------------- */

static char *canonical_all(const ppd_config *cfg) {
    size_t n;
    const ppd_config_setting *t = ppd_config_table(&n);
    const char **names = malloc(n * sizeof *names);
    for (size_t k = 0; k < n; k++) names[k] = t[k].name;
    ppd_buf b = {0};
    if (ppd_config_canonical(cfg, names, n, &b) != PPD_OK) ppd_buf_printf(&b, "(failed)");
    free(names);
    return (char *)b.data; /* NUL-terminated by ppd_buf_printf */
}

TEST(config_canonical_text_equal_meanings) {
    ppd_config *a = fresh(), *b = fresh();
    CHECK_OK(ppd_config_set(a, "model.cross_max_dist=20"));
    CHECK_OK(ppd_config_set(b, "cross_max_dist=20.0"));
    CHECK_OK(ppd_config_set(a, "train.lr=0.001"));
    CHECK_OK(ppd_config_set(b, "lr=1.e-3"));
    CHECK_OK(ppd_config_set(a, "use_unbound=yes"));
    CHECK_OK(ppd_config_set(b, "use_unbound=True"));
    CHECK_OK(ppd_config_set(a, "train.score_loss_weight=-0.0"));
    CHECK_OK(ppd_config_set(b, "train.score_loss_weight=0"));
    CHECK_OK(ppd_config_set(b, "knn_size=+20"));
    static const char *const names[] = {"model.cross_max_dist", "lr",
                                        "data.use_unbound",     "train.score_loss_weight",
                                        "data.knn_size",        "train.checkpoint_path",
                                        "data.resolution"};
    ppd_buf ta = {0}, tb = {0};
    CHECK_OK(ppd_config_canonical(a, names, 7, &ta));
    CHECK_OK(ppd_config_canonical(b, names, 7, &tb));
    CHECK_STR((char *)ta.data, (char *)tb.data);
    CHECK_STR((char *)ta.data, "model.cross_max_dist=20\n"
                               "train.lr=0.001\n"
                               "data.use_unbound=true\n"
                               "train.score_loss_weight=0\n"
                               "data.knn_size=20\n"
                               "train.checkpoint_path=null\n"
                               "data.resolution=residue\n");
    /* a different value gives a different text; appending keeps what was there */
    CHECK_OK(ppd_config_set(b, "lr=0.0010000000000000002"));
    tb.len = 0;
    CHECK_OK(ppd_buf_printf(&tb, "x\n"));
    CHECK_OK(ppd_config_canonical(b, names, 2, &tb));
    CHECK_STR((char *)tb.data, "x\nmodel.cross_max_dist=20\ntrain.lr=0.0010000000000000002\n");
    /* strings stay one line */
    CHECK_OK(ppd_config_set(a, "data.data_path=a\\b"));
    ta.len = 0;
    const char *dp = "data.data_path";
    CHECK_OK(ppd_config_canonical(a, &dp, 1, &ta));
    CHECK_STR((char *)ta.data, "data.data_path=a\\\\b\n");
    CHECK_EQ(ppd_config_canonical(a, (const char *const[]){"nope"}, 1, &ta), PPD_ERR_USAGE);
    ppd_buf_free(&ta);
    ppd_buf_free(&tb);
    ppd_config_free(a);
    ppd_config_free(b);
}

TEST(config_write_yaml_round_trip) {
    const char *dir = ppt_tmpdir();
    ppd_config *a = fresh();
    CHECK_OK(ppd_config_load(a, cfgdata("config/diffdock-pp/confidence_model_dips/args.yaml")));
    CHECK_OK(ppd_config_set(a, "data.data_path=we\"ird \\ path\n\twith: # yaml: [chars]"));
    CHECK_OK(ppd_config_set(a, "log.run_name=null")); /* null */
    CHECK_OK(ppd_config_set(a, "log.project=true"));  /* plain 'true' is only a string here */
    CHECK_OK(ppd_config_set(a, "log.group=~x"));
    CHECK_OK(ppd_config_set(a, "train.lr=0.1"));
    CHECK_OK(ppd_config_set(a, "train.score_loss_weight=-1.2345678901234567e-300"));
    CHECK_OK(ppd_config_set(a, "train.energy_loss_weight=1e22"));
    CHECK_OK(ppd_config_set(a, "data.max_lig_size=9223372036854775807"));
    CHECK_OK(ppd_config_set(a, "model.cross_max_dist=3"));

    char path[4200];
    snprintf(path, sizeof path, "%s/all.yaml", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    ppd_config_write_yaml(a, f);
    fclose(f);

    ppd_config *b = fresh();
    CHECK_OK(ppd_config_load(b, path));
    CHECK_EQ(ppd_config_warnings(b), 0);
    char *ta = canonical_all(a), *tb = canonical_all(b);
    CHECK_STR(ta, tb);
    CHECK_STR(ppd_config_str(b, "data.data_path"), "we\"ird \\ path\n\twith: # yaml: [chars]");
    CHECK_STR(ppd_config_str(b, "log.project"), "true");
    CHECK(ppd_config_is_null(b, "log.run_name"));
    free(ta);
    free(tb);

    /* comments carry type, range, origin and help; floats are spelled as PyYAML floats */
    ppd_buf text = {0};
    CHECK_OK(ppd_read_file(path, &text));
    const char *s = (const char *)text.data;
    CHECK(strstr(s, "data:\n  dataset: \"dips\"  # one of db5, dips, toy; from ") != NULL);
    CHECK(strstr(s, "  knn_size: 20  # an integer in [1, 10000]; from ") != NULL);
    CHECK(strstr(s, "  lr: 0.1  # a number in [0, 1]; from --set; Adam learning rate\n"));
    CHECK(strstr(s, "  cross_max_dist: 3.0  #") != NULL);
    CHECK(strstr(s, "  energy_loss_weight: 1.0e+22  #") != NULL);
    CHECK(strstr(s, "  batch_mb: 32  # an integer in [1, 4096]; from default; ") != NULL);
    CHECK(strstr(s, "  use_interface_rmsd: false  # a boolean; from default; ") != NULL);
    CHECK(strstr(s, "  run_name: null  # a string or null; from --set; ") != NULL);
    CHECK(strstr(s, "[DiffDock-PP only, ignored]\n") != NULL);
    ppd_buf_free(&text);
    ppd_config_free(a);
    ppd_config_free(b);
}

TEST(config_docs_table_matches_the_table) {
    char *gen = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&gen, &len);
    REQUIRE(f != NULL);
    ppd_config_write_markdown(f);
    fclose(f);
    ppd_buf doc = {0};
    CHECK_OK(ppd_read_file("docs/config.md", &doc));
    if (doc.data && !strstr((const char *)doc.data, gen))
        ppt_fail(__FILE__, __LINE__,
                 "docs/config.md lacks the generated settings table: regenerate it from "
                 "ppd_config_write_markdown()");
    /* every setting that ppdock uses has a row */
    size_t n;
    const ppd_config_setting *t = ppd_config_table(&n);
    char row[256];
    for (size_t k = 0; k < n; k++) {
        snprintf(row, sizeof row, (t[k].flags & PPD_CFG_COMPAT) ? "`%s`" : "| `%s` |",
                 (t[k].flags & PPD_CFG_COMPAT) ? strchr(t[k].name, '.') + 1 : t[k].name);
        if (!strstr(gen, row)) ppt_fail(__FILE__, __LINE__, "no entry for %s", t[k].name);
    }
    ppd_buf_free(&doc);
    free(gen);
}
