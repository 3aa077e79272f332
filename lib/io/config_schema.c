/* The table of every setting (see ppdock/config.h).
 *
 * It holds every key that DiffDock-PP's configs and checkpoint args.yaml files contain, so that
 * those files load without warnings. A key sits in the section where DiffDock-PP's nested configs
 * put it (knn_size is under data:, no_torsion under model:); keys that only appear in the flat
 * args files are placed by meaning. Defaults are DiffDock-PP's argparse defaults unless noted
 * (docs/spec/diffdock-pp.md §0); ppdock's own additions are data.pdb_models and cache.*.
 * Settings marked COMPAT are read, type-checked and then ignored.
 *
 * Inner-most names must stay unique across sections: DiffDock-PP finds a setting by that name
 * alone (tests/unit/test_config.c checks it). docs/config.md carries a generated copy of the
 * non-compat rows; a test fails when the two drift apart.
 */
#include "ppdock/config.h"

#include <math.h>

#define NONNEG_INT   0, INT64_MAX
#define ANY_FLOAT    (-HUGE_VAL), HUGE_VAL
#define NONNEG_FLOAT 0.0, HUGE_VAL

/* One macro per type keeps each row on a line or two. I and F go through a second macro so
 * that a range written as NONNEG_INT is expanded into its two bounds first. */
#define B(name, def, flags, help)                                                                  \
    { name, PPD_CFG_BOOL, def, 0, 0, 0, 0, NULL, flags, help }
#define I(...) I_(__VA_ARGS__)
#define I_(name, def, lo, hi, flags, help)                                                         \
    { name, PPD_CFG_INT, def, lo, hi, 0, 0, NULL, flags, help }
#define F(...) F_(__VA_ARGS__)
#define F_(name, def, lo, hi, flags, help)                                                         \
    { name, PPD_CFG_FLOAT, def, 0, 0, lo, hi, NULL, flags, help }
#define S(name, def, flags, help)                                                                  \
    { name, PPD_CFG_STR, def, 0, 0, 0, 0, NULL, flags, help }
#define E(name, def, choices, flags, help)                                                         \
    { name, PPD_CFG_ENUM, def, 0, 0, 0, 0, choices, flags, help }

#define COMPAT PPD_CFG_COMPAT
#define NUL    NULL /* a null default (and null allowed) */

static const ppd_config_setting table[] = {
    /* ---- data: what to read and how to turn it into graphs ---- */
    E("data.dataset", "db5", "db5|dips|toy", 0,
      "layout of the data set: db5 = <data_path>/structures/<ID>_{r,l}_{b,u}.pdb[.gz]; dips = "
      "DIPS .dill pairs; toy = DiffDock-PP's debug set"),
    S("data.data_file", "datasets/DB5/splits.csv", 0,
      "CSV list of complexes (columns path,split; split is train, val or test)"),
    S("data.data_path", "datasets/DB5", 0, "root directory of the structures named in data_file"),
    E("data.resolution", "residue", "residue|backbone|atom", 0,
      "graph nodes: one per residue (CA), backbone atoms, or all atoms"),
    I("data.knn_size", "20", 1, 10000, 0, "neighbours per node in each protein's kNN graph"),
    B("data.use_unbound", "false", 0,
      "DB5: read the unbound structures (_u) instead of bound (_b)"),
    B("data.no_graph_cache", "true", 0,
      "DiffDock-PP: do not keep graphs between runs (true in all its configs)"),
    B("data.use_orientation_features", "false", 0,
      "compute EquiDock orientation features (no model reads them)"),
    I("data.multiplicity", "1", 1, 1000000, 0, "times each training complex is repeated per epoch"),
    E("data.pdb_models", "all", "all|first", 0,
      "PDB files with several MODELs: concatenate every MODEL, as DiffDock-PP, or keep the first"),
    B("data.recache", "false", COMPAT, "DiffDock-PP: rebuild its pickle caches"),
    B("data.no_lm_cache", "false", COMPAT, "DiffDock-PP: do not cache ESM embeddings"),
    S("data.pose_path", "data", COMPAT, "DiffDock-PP: root of test poses"),
    I("data.num_workers", "0", NONNEG_INT, COMPAT, "DiffDock-PP: DataLoader workers"),
    F("data.receptor_radius", "30", NONNEG_FLOAT, COMPAT,
      "DiffDock (ligand) leftover: receptor edge cutoff"),
    I("data.c_alpha_max_neighbors", "10", NONNEG_INT, COMPAT,
      "DiffDock (ligand) leftover: max residue neighbours"),
    F("data.atom_radius", "5", NONNEG_FLOAT, COMPAT,
      "DiffDock (ligand) leftover: atom edge cutoff"),
    I("data.atom_max_neighbors", "8", NONNEG_INT, COMPAT,
      "DiffDock (ligand) leftover: max atom neighbours"),
    I("data.matching_popsize", "20", NONNEG_INT, COMPAT,
      "DiffDock (ligand) leftover: conformer matching popsize"),
    I("data.matching_maxiter", "20", NONNEG_INT, COMPAT,
      "DiffDock (ligand) leftover: conformer matching iterations"),
    I("data.max_lig_size", NUL, NONNEG_INT, COMPAT,
      "DiffDock (ligand) leftover: max heavy atoms in a ligand"),
    B("data.remove_hs", "false", COMPAT, "DiffDock (ligand) leftover: remove hydrogens"),

    /* ---- cache: ppdock's LMDB caches ---- */
    I("cache.batch_mb", "32", 1, 4096, 0, "MB of records per LMDB write transaction"),
    I("cache.map_mb", "1024", 1, 16777216, 0, "initial LMDB map size in MB (grown as needed)"),

    /* ---- device: where esm-embed and train compute; ppdock's own ---- */
    E("device.engine", "auto", "auto|cpu|cuda", 0,
      "cuda = the GPU (a build with CUDA), cpu = OpenBLAS and OpenMP, auto = cuda when this "
      "build has CUDA and a GPU is visible (the --device option)"),
    I("device.index", "0", 0, 1024, 0, "CUDA device ordinal (after CUDA_VISIBLE_DEVICES)"),
    E("device.precision", "fp32", "fp32|tf32|bf16", 0,
      "GPU GEMMs: fp32 (parity with the CPU and PyTorch), tf32 tensor cores (10-bit mantissa "
      "inputs) or bf16 tensor cores (bf16 weights and inputs; esm-embed only), all with fp32 "
      "sums; errors in docs/esm-embed.md"),
    I("device.edges_per_chunk", "32768", 1, 100000000, 0,
      "train on the GPU: edges per chunk of the per-edge weight MLPs (train.chunk_edges is the "
      "CPU's); a larger chunk means fewer and fuller kernel launches for about edges_per_chunk x "
      "(9 ns + 3 x 3032) x 4 bytes of device memory (1.2 GB at 32768 and the released size)"),
    F("device.budget_gb", "0", 0, 1e6, 0,
      "device memory budget for weights, activations and cuBLAS (train: also gradients and Adam "
      "moments); batches are planned to fit it; 0 = esm-embed: 95% of the GPU's free memory at "
      "start-up; train: what the cache's largest batch can need (every receptor-ligand pair a "
      "cross edge), at most that"),

    /* ---- esm: esm-embed (ESM-2 per-residue embeddings); ppdock's own ---- */
    S("esm.weights", NUL, 0,
      "ESM-2 weights: a Hugging Face model.safetensors (config.json beside it is optional) or a "
      "fair-esm .pt checkpoint; null = give --weights or --random-init"),
    I("esm.layer", "-1", -1, 1000, 0,
      "representation layer to store; -1 = the last (after the final LayerNorm), as DiffDock-PP"),
    E("esm.dtype", "f16", "f16|f32", 0, "storage type of embeddings in the cache"),
    E("esm.long_policy", "whole", "whole|window|truncate|error", 0,
      "sequences longer than esm.max_length: whole = embed them whole as DiffDock-PP does (a "
      "batch of their own), window = overlapping windows blended in the overlap, truncate = "
      "first esm.max_length residues, error = skip and report"),
    I("esm.max_length", "1022", 1, 1000000, 0,
      "residues per window (window), kept residues (truncate) or the limit (error)"),
    I("esm.overlap", "256", 0, 1000000, 0, "residues shared by consecutive windows (window)"),
    E("esm.unknown", "x", "x|unk|error", 0,
      "FASTA letters outside ESM's 25 residue letters: map to X (24), to <unk> (3), or skip the "
      "sequence; always counted and reported"),
    F("esm.mem_gb", "8", 0.01, 1e6, 0,
      "host memory budget for weights, activations and attention scores; batches are planned "
      "to fit it"),

    /* ---- model: the score model ---- */
    I("model.ns", "16", 1, 1024, 0, "scalar (0e) channels per node"),
    I("model.nv", "4", 1, 1024, 0, "vector (1o/1e) channels per node"),
    I("model.num_conv_layers", "2", 1, 64, 0, "tensor-product convolution layers"),
    I("model.lm_embed_dim", "0", 0, 65536, 0,
      "width of the language-model node features: 1280 for ESM-2 650M, 0 for none"),
    F("model.dropout", "0.1", 0, 1, 0, "dropout probability in the edge and readout MLPs"),
    I("model.dist_embed_dim", "32", 1, 4096, 0,
      "Gaussian smearing width of intra-protein distances"),
    I("model.cross_dist_embed_dim", "32", 1, 4096, 0,
      "Gaussian smearing width of receptor-ligand distances"),
    I("model.sigma_embed_dim", "32", 2, 4096, 0, "width of the diffusion-time embedding"),
    E("model.embedding_type", "sinusoidal", "sinusoidal|fourier", 0,
      "diffusion-time embedding (released models: sinusoidal)"),
    I("model.embedding_scale", "10000", 1, 1000000000, 0,
      "time is multiplied by this before embedding"),
    F("model.cross_max_dist", "80", NONNEG_FLOAT, 0,
      "receptor-ligand edge cutoff in A when dynamic_max_cross is off"),
    B("model.dynamic_max_cross", "false", 0,
      "receptor-ligand cutoff = cross_cutoff_weight * sigma_tr + cross_cutoff_bias"),
    F("model.cross_cutoff_weight", "3", NONNEG_FLOAT, 0, "slope of the dynamic cross cutoff"),
    F("model.cross_cutoff_bias", "40", NONNEG_FLOAT, 0, "offset of the dynamic cross cutoff in A"),
    B("model.scale_by_sigma", "true", 0, "divide the predicted scores by the noise scale"),
    E("model.model_type", "diffusion", "diffusion|e3nn", COMPAT,
      "DiffDock-PP: model class (configs say e3nn; ppdock has one model)"),
    E("model.ebd_type", "continuous", "continuous|discrete", COMPAT, "DiffDock-PP: unused"),
    E("model.encoder_type", "e3nn", "e3nn", COMPAT, "DiffDock-PP: protein encoder (only e3nn)"),
    I("model.hidden_size", "64", NONNEG_INT, COMPAT, "DiffDock-PP: unused by the e3nn model"),
    F("model.max_radius", "5", NONNEG_FLOAT, COMPAT,
      "DiffDock-PP: sizes an unused layer (intra smearing is fixed at 30 A)"),
    B("model.no_torsion", "false", COMPAT,
      "DiffDock-PP: rigid docking only (ppdock is always rigid)"),
    B("model.no_batch_norm", "false", COMPAT,
      "DiffDock-PP: no batch norm (ppdock never uses it, as the released models)"),
    B("model.use_second_order_repr", "false", COMPAT,
      "DiffDock-PP: l=2 irreps in the hidden features (not in ppdock)"),
    S("model.torchhub_path", "torchhub", COMPAT, "DiffDock-PP: torch.hub directory of ESM weights"),

    /* ---- train ---- */
    F("train.lr", "1e-4", 0, 1, 0, "Adam learning rate"),
    F("train.weight_decay", "1e-6", 0, 1, 0, "Adam L2 weight decay"),
    I("train.epochs", "200", 0, 1000000000, 0, "maximum number of epochs"),
    I("train.patience", "10", 0, 1000000000, 0,
      "stop after this many epochs without validation improvement"),
    I("train.batch_size", "10", 1, 1000000, 0, "complexes per optimizer step (over all GPUs)"),
    F("train.tr_weight", "0.33", 0, 1e6, 0, "weight of the translation loss"),
    F("train.rot_weight", "0.33", 0, 1e6, 0, "weight of the rotation loss"),
    I("train.val_inference_freq", "5", 1, 1000000000, 0,
      "run reverse diffusion on the val split every this many epochs"),
    I("train.num_steps", "20", 1, 100000, 0, "reverse-diffusion steps (time grid 1/num_steps)"),
    I("train.actual_steps", "40", 1, 100000, 0, "stop reverse diffusion after this many steps"),
    I("train.seed", "0", 0, 4294967295, 0, "random seed"),
    S("train.checkpoint_path", NUL, 0, "checkpoint to start from (fine-tuning, resume)"),
    I("train.save_model_every", "10", 1, 1000000000, 0,
      "save the latest model every this many epochs"),
    I("train.checkpoint_steps", "1000", 0, 1000000000, 0,
      "ppdock: also write RUN/last.safetensors every this many optimizer steps (0: only at the "
      "end of each epoch and of the run)"),
    I("train.micro_batch", "0", 0, 1000000, 0,
      "ppdock: complexes per forward/backward pass; a batch is split into passes of this many "
      "and their gradients accumulate (0: the whole batch in one pass)"),
    F("train.max_mem_gb", "16", 0.01, 1e6, 0,
      "ppdock: host memory budget of train; batches are split into passes whose planned "
      "activation memory fits it (their gradients add up), a complex never skipped"),
    B("train.deterministic", "false", 0,
      "ppdock: on the GPU, fp32 GEMMs even when device.precision is tf32, so that a run repeats "
      "bit for bit (the GPU pass never sums with atomics; this pins the one thing that could "
      "vary: TF32 tensor-core results across GPUs); the --deterministic option"),
    B("train.fixed_noise", "false", 0,
      "ppdock: give each training complex the same noise (t, translation, rotation) every "
      "epoch, as validation does: an overfitting check of a pipeline, not for real training"),
    I("train.chunk_edges", "4096", 1, 100000000, 0,
      "ppdock: edges per chunk of the per-edge weight MLPs; bounds their activation memory to "
      "about chunk_edges x (6 ns + 2 x 3032) floats (results do not depend on it)"),
    F("train.tor_weight", "0.33", NONNEG_FLOAT, COMPAT,
      "DiffDock-PP: torsion loss weight (rigid: 0)"),
    F("train.score_loss_weight", "0", ANY_FLOAT, COMPAT, "DiffDock-PP: unused"),
    F("train.energy_loss_weight", "1", ANY_FLOAT, COMPAT, "DiffDock-PP: unused"),
    E("train.mode", "train", "train|test", COMPAT, "DiffDock-PP: train or test"),
    I("train.num_folds", "5", NONNEG_INT, COMPAT, "DiffDock-PP: cross-validation folds"),
    I("train.test_fold", "0", NONNEG_INT, COMPAT, "DiffDock-PP: fold used for inference"),
    S("train.metric", "loss", COMPAT, "DiffDock-PP: metric name for printing"),
    I("train.gpu", "0", NONNEG_INT, COMPAT,
      "DiffDock-PP: GPU id (ppdock: SLURM/CUDA_VISIBLE_DEVICES)"),
    I("train.num_gpu", "1", NONNEG_INT, COMPAT,
      "DiffDock-PP: GPUs for DataParallel (ppdock: ranks)"),
    S("train.save_path", "", COMPAT, "DiffDock-PP: checkpoint directory (ppdock: -o)"),
    B("train.save_pred", "false", COMPAT, "DiffDock-PP: save test-set predictions"),

    /* ---- diffusion: the noise schedule ---- */
    F("diffusion.tr_s_min", "0.1", 1e-6, 1e6, 0, "smallest translation noise sigma in A"),
    F("diffusion.tr_s_max", "30", 1e-6, 1e6, 0, "largest translation noise sigma in A"),
    F("diffusion.rot_s_min", "0.1", 0.001, 2, 0,
      "smallest rotation noise sigma (IGSO(3) tables cover 0.01..2)"),
    F("diffusion.rot_s_max", "1.65", 0.001, 2, 0, "largest rotation noise sigma"),
    B("diffusion.sample_train", "false", 0,
      "also run reverse diffusion on training complexes at validation time (logging only)"),
    I("diffusion.num_inference_complexes", NUL, 0, 1000000000, 0,
      "val complexes sampled at validation time (null: all)"),
    I("diffusion.num_inference_complexes_train_data", NUL, 0, 1000000000, 0,
      "train complexes sampled when sample_train is on (null: all)"),
    F("diffusion.tor_s_min", "0.0314", NONNEG_FLOAT, COMPAT, "DiffDock-PP: torsion sigma (unused)"),
    F("diffusion.tor_s_max", "3.14", NONNEG_FLOAT, COMPAT, "DiffDock-PP: torsion sigma (unused)"),

    /* ---- inference: sampling ---- */
    I("inference.num_samples", NUL, 1, 1000000, 0, "poses sampled per complex (null: 40 in dock)"),
    B("inference.no_final_noise", "false", 0, "no noise in the last reverse-diffusion step"),
    B("inference.ode", "false", 0, "probability-flow ODE instead of the SDE"),
    B("inference.no_random", "false", 0, "no noise in any reverse-diffusion step"),
    F("inference.temp_sampling", "1.0", 0.001, 1000, 0, "low-temperature sampling T (1: off)"),
    F("inference.temp_psi", "0.0", 0, 1000, 0, "low-temperature sampling psi"),
    F("inference.temp_sigma_data_tr", "0.5", 0, 1, 0,
      "low-temperature sigma_data for translation, as a fraction of log(tr_s_max/tr_s_min)"),
    F("inference.temp_sigma_data_rot", "0.5", 0, 1, 0,
      "low-temperature sigma_data for rotation, as a fraction of log(rot_s_max/rot_s_min)"),
    S("inference.score_model_path", NUL, 0, "score model checkpoint for docking"),
    S("inference.filtering_model_path", NUL, 0, "confidence model checkpoint that ranks the poses"),
    B("inference.run_inference_without_confidence_model", "false", 0,
      "do not rank poses with the confidence model"),
    B("inference.mirror_ligand", "false", COMPAT, "DiffDock-PP: swap roles for half the samples"),
    B("inference.wandb_sweep", "false", COMPAT, "DiffDock-PP: wandb sweep of temperatures"),
    S("inference.prediction_storage", NUL, COMPAT, "DiffDock-PP: output path of predictions"),
    I("inference.max_poses", "100", NONNEG_INT, COMPAT, "DiffDock-PP: max poses loaded for eval"),

    /* ---- confidence: DiffDock-PP's confidence-model training ---- */
    B("confidence.rmsd_prediction", "false", COMPAT,
      "DiffDock-PP: regress RMSD instead of classify"),
    F("confidence.rmsd_classification_cutoff", "5", NONNEG_FLOAT, COMPAT,
      "DiffDock-PP: RMSD in A below which a pose is a positive"),
    I("confidence.generate_n_predictions", "7", NONNEG_INT, COMPAT,
      "DiffDock-PP: poses generated per complex for training"),
    S("confidence.samples_directory", "", COMPAT, "DiffDock-PP: directory of generated poses"),
    B("confidence.use_randomized_confidence_data", "false", COMPAT,
      "DiffDock-PP: random poses instead of score-model poses"),
    B("confidence.use_complex_rmsd", "false", COMPAT, "DiffDock-PP: labels from complex RMSD"),
    B("confidence.use_interface_rmsd", "false", COMPAT, "DiffDock-PP: labels from interface RMSD"),

    /* ---- log: DiffDock-PP's run bookkeeping (ppdock logs to its run directory) ---- */
    B("log.debug", "false", COMPAT, "DiffDock-PP: load a smaller data set"),
    S("log.config_file", NUL, COMPAT, "DiffDock-PP: the YAML config it was started with"),
    S("log.args_file", "args.yaml", COMPAT, "DiffDock-PP: where the arguments were dumped"),
    S("log.log_file", "results.yaml", COMPAT, "DiffDock-PP: where results were saved"),
    S("log.tuned_param", "", COMPAT, "DiffDock-PP: hyper-parameter being tuned"),
    E("log.logger", "tensorboard", "wandb|tensorboard", COMPAT, "DiffDock-PP: logger"),
    S("log.run_name", NUL, COMPAT, "DiffDock-PP: run name"),
    S("log.wandb_run_name", NUL, COMPAT, "DiffDock-PP: wandb run name"),
    I("log.log_frequency", "10", NONNEG_INT, COMPAT, "DiffDock-PP: log every n batches"),
    S("log.project", NUL, COMPAT, "DiffDock-PP: wandb project"),
    S("log.entity", NUL, COMPAT, "DiffDock-PP: wandb entity"),
    S("log.group", NUL, COMPAT, "DiffDock-PP: wandb group"),
    I("log.visualize_n_val_graphs", "5", NONNEG_INT, COMPAT,
      "DiffDock-PP: validation graphs to visualize"),
    S("log.visualization_path", "./visualization", COMPAT, "DiffDock-PP: visualization directory"),
    S("log.tensorboard_path", "runs", COMPAT, "DiffDock-PP: tensorboard directory"),
    B("log.no_tqdm", "false", COMPAT, "DiffDock-PP: no progress bars"),
};

const ppd_config_setting *ppd_config_table(size_t *n) {
    *n = sizeof table / sizeof table[0];
    return table;
}
