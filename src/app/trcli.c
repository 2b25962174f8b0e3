/* trcli.c - the trainers' command line; see trcli.h. */
#include "trcli.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "prov.h"
#include "trmpi.h"
#include "trsamples.h"
#include "distill.h"

/* ---- common flags ------------------------------------------------------- */

bool trc_parse_option(tr_options *o, int code, const char *arg)
{
    switch (code) {
    case TRC_OPT_DATA: o->data = arg; break;
    case TRC_OPT_VAL_DATA: o->val_data = arg; break;
    case TRC_OPT_SEED: o->seed = cli_u64("--seed", arg); o->set |= TR_SET_SEED; break;
    case TRC_OPT_SPLIT_SEED:
        o->split_seed = cli_u64("--split-seed", arg);
        o->set |= TR_SET_SPLIT_SEED;
        break;
    case TRC_OPT_STEPS: o->steps = cli_long("--steps", arg, 0, 1000000000000L); o->set |= TR_SET_STEPS; break;
    case TRC_OPT_STOP_AFTER: o->stop_after = cli_long("--stop-after", arg, 1, 1000000000000L); break;
    case TRC_OPT_BATCH_SIZE:
        o->batch_size = (int)cli_long("--batch-size", arg, 1, 1 << 16);
        o->set |= TR_SET_BATCH;
        break;
    case TRC_OPT_LR: o->opt.lr = (float)cli_double("--lr", arg, 0, 1e9); o->set |= TR_SET_LR; break;
    case TRC_OPT_WEIGHT_DECAY:
        o->opt.weight_decay = (float)cli_double("--weight-decay", arg, 0, 1e9);
        o->set |= TR_SET_WD;
        break;
    case TRC_OPT_SCHEDULE:
        o->opt.schedule = (opt_schedule)cli_choice("--schedule", arg, tr_schedule_names);
        o->set |= TR_SET_SCHEDULE;
        break;
    case TRC_OPT_WARMUP:
        o->opt.warmup = cli_long("--warmup", arg, 0, 1000000000000L);
        o->set |= TR_SET_WARMUP;
        break;
    case TRC_OPT_CLIP: o->opt.clip = (float)cli_double("--clip", arg, 0, 1e9); o->set |= TR_SET_CLIP; break;
    case TRC_OPT_EVAL_EVERY:
        o->eval_every = cli_long("--eval-every", arg, 0, 1000000000000L);
        o->set |= TR_SET_EVAL;
        break;
    case TRC_OPT_LOG: o->log_path = arg; break;
    case 'o': o->out_path = arg; break;
    case TRC_OPT_RESUME: o->resume_path = arg; break;
    case TRC_OPT_KEEP_BEST: o->keep_best = true; break;
    case TRC_OPT_THREADS: o->threads = (int)cli_long("--threads", arg, 0, 64); break;
    case TRC_OPT_DUMP_SPLIT: o->dump_split = arg; break;
    case TRC_OPT_SAMPLES: o->samples = cli_long("--samples", arg, 0, 1000000); break;
    case TRC_OPT_EMA: o->ema = (float)cli_double("--ema", arg, 0, 0.999999); o->set |= TR_SET_EMA; break;
    case TRC_OPT_MODEL_ONLY: o->model_only = true; break;
    case TRC_OPT_INPUT_NOISE:
        o->input_noise = (float)cli_double("--input-noise", arg, 0, 0.999999);
        o->set |= TR_SET_NOISE;
        break;
    case TRC_OPT_SWA_START:
        o->swa_start = (float)cli_double("--swa-start", arg, 0, 0.999999);
        o->set |= TR_SET_SWA;
        break;
    case TRC_OPT_FOLD:
        if (ds_fold_parse(arg, &o->fold, &o->n_folds)) cli_usage("--fold: %s", err_msg());
        o->set |= TR_SET_FOLD;
        break;
    case TRC_OPT_TEACHER:
        if (o->n_teachers == TR_MAX_TEACHERS) cli_usage("--teacher: at most %d", TR_MAX_TEACHERS);
        o->teacher[o->n_teachers++] = arg;
        break;
    case TRC_OPT_DISTILL_WEIGHT:
        o->distill_weight = (float)cli_double("--distill-weight", arg, 0, 1);
        o->set |= TR_SET_DISTILL;
        break;
    default: return false;
    }
    return true;
}

void trc_check_args(const tr_options *o, int argc, char **argv, int optind_)
{
    if (optind_ < argc) cli_usage("unexpected argument '%s'", argv[optind_]);
    if (!o->data) cli_usage("--data FILE is required");
    if (!o->out_path || !*o->out_path) cli_usage("-o FILE is required");
    /* stdout carries the summary */
    if (!strcmp(o->out_path, "-")) cli_usage("-o: give a file, not '-' (stdout has the summary)");
    if (o->log_path && !strcmp(o->log_path, "-"))
        cli_usage("--log: give a file, not '-' (stdout has the summary)");
}

void trc_print_usage(FILE *f, const tr_options *o)
{
    char data[4200] = "required";
    if (o->data) snprintf(data, sizeof data, "default %.4096s", o->data);
    fprintf(f,
"Training:\n"
"      --data FILE        training names, one per line (%s)\n"
"      --val-data FILE    validation names (default: a seeded 90/10 split of the\n"
"                         distinct names of --data)\n"
"      --split-seed N     seed of that split (default %" PRIu64 "; kept apart from --seed so\n"
"                         that every model is validated on the same names)\n"
"      --seed N           seed of the initialisation and of batch sampling (default %" PRIu64 ")\n"
"      --steps N          optimiser steps in all, resumed ones included (default %ld)\n"
"      --stop-after N     end this run after step N of that schedule, as if it were\n"
"                         the last (evaluated and saved); --resume FILE goes on\n"
"                         with the schedule (with --keep-best or --model-only,\n"
"                         from the .last file, as after Ctrl-C): a run in parts,\n"
"                         or a model taken early from a longer schedule\n"
"      --batch-size N     names per batch, drawn at random (default %d)\n"
"      --lr X             AdamW peak learning rate (default %g)\n"
"      --weight-decay X   AdamW decoupled weight decay (default %g)\n"
"      --schedule S       constant or cosine: --warmup steps of linear warm-up,\n"
"                         then a cosine decay to %g x --lr (default %s)\n"
"      --warmup N         warm-up steps of the cosine schedule (default %ld)\n"
"      --clip X           clip the global gradient norm to X; 0 = off (default %g)\n"
"      --eval-every N     validation loss on the whole validation set every N steps\n"
"                         and at the end; 0 = only at the end (default %ld)\n"
"      --log FILE         learning curve, TSV: step train_loss val_loss lr tokens_per_s\n"
"                         (a row per evaluation; appended to on --resume)\n"
"      --samples N        at each evaluation sample N names (an rng of their own: the\n"
"                         training is the same with or without); --log gains\n"
"                         copied (share already in the training names), distinct\n"
"                         (share of distinct names) and mean_len; a few are shown\n"
"                         under the progress line (default 0 = none)\n"
"  -o, --output FILE      checkpoint, rewritten at every evaluation and at the end\n"
"                         (default %s in the current directory)\n"
"      --model-only       FILE holds the model alone, without the optimiser state\n"
"                         (a third of the size; not resumable: on Ctrl-C the whole\n"
"                         state goes to FILE with .last before .safetensors)\n"
"      --ema DECAY        evaluate and save an exponential moving average of the\n"
"                         weights (e.g. 0.999; 0 = off, the default); the raw\n"
"                         weights stay in the checkpoint for --resume\n"
"      --swa-start FRAC   the same with the plain mean of the weights after every\n"
"                         step from FRAC x --steps on (stochastic weight averaging,\n"
"                         e.g. 0.75 of a cosine run; 0 = off, the default)\n"
"      --input-noise P    replace each input letter of a training batch with\n"
"                         probability P by a letter drawn at the training\n"
"                         letters' frequencies, targets unchanged (data noising,\n"
"                         a regulariser; e.g. 0.1; 0 = off, the default)\n"
"      --fold K/N         train without fold K of N of the training names (folds: a\n"
"                         seeded hash of each name, apart from the split; the\n"
"                         validation names stay); the checkpoint records it\n"
"      --teacher FILE     distil: soft targets from FILE, a model of any kind (a\n"
"                         mix too) trained with --fold; give one per fold, each\n"
"                         training name learns only from the teacher that never\n"
"                         saw it (refused if a fold has none)\n"
"      --distill-weight A loss = (1-A) CE(data) + A CE(teacher) (default 0.5 with\n"
"                         --teacher); validation stays plain CE, train_loss is\n"
"                         the mixed loss\n"
"      --keep-best        FILE keeps the state of lowest validation loss instead; on\n"
"                         Ctrl-C the latest state goes to FILE with .last before .safetensors\n"
"      --resume FILE      continue from a checkpoint: weights, AdamW moments, step, rng;\n"
"                         the training flags not given are taken from it\n"
"      --threads N        N >= 2: split every batch across N threads (data\n"
"                         parallel: a replica of the model and a tape per thread,\n"
"                         matrix products single-threaded; the same result as one\n"
"                         thread up to float rounding, unless the model has\n"
"                         dropout); 1: one thread; default: one tape, matrix\n"
"                         products on every core.  Several processes: mpirun -np K\n"
"                         (programs built with make MPI=1; see the README)\n"
"      --dump-split DIR   write the names of each side to DIR/train.txt, DIR/val.txt\n"
"  -h, --help             this help\n"
"  -V, --version          the version\n"
"\n"
"Output: a TSV summary on stdout, header then values:\n"
"  model params steps train_loss val_loss best_val_loss best_step seconds steps_per_s tokens_per_s\n"
"train_loss is the mean loss of the last %d training batches; val_loss is over the\n"
"whole validation set with the final weights (nats per character).  A progress\n"
"line is shown on stderr when it is a terminal.\n"
"VILLES_CHECK_NAN=1 in the environment checks every op's output, so that a NaN\n"
"names the first op that produced one (slower).\n"
"Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and exits\n"
"with status 130; --resume continues it to the same result as an uninterrupted run\n"
"(a second Ctrl-C quits at once).  A NaN or infinite loss stops training with\n"
"status 1 and leaves the last checkpoint written as it was.\n"
"Exit status: 0 success, 1 runtime error (unreadable or invalid data, NaN loss),\n"
"2 usage error, 130 interrupted (143 for SIGTERM).\n",
            data, o->split_seed, o->seed, o->steps, o->batch_size, (double)o->opt.lr,
            (double)o->opt.weight_decay, (double)o->opt.min_lr_frac,
            tr_schedule_names[o->opt.schedule], o->opt.warmup, (double)o->opt.clip, o->eval_every,
            o->out_path ? o->out_path : "none", TR_WINDOW);
#ifdef VILLES_MPI
    fputs("Built with MPI: under mpirun -np K each of the K processes takes a slice of\n"
          "every batch (and --threads N splits it again); process 0 evaluates, logs,\n"
          "prints and writes the checkpoints.\n", f);
#endif
}



/* ---- the command line --------------------------------------------------- */

/* The model flags' value as JSON, range-checked (cli_usage otherwise). */
static cJSON *flag_value(const trc_flag *f, const char *arg)
{
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", f->name);
    switch (f->type) {
    case TRC_INT: return cJSON_CreateNumber((double)cli_long(flag, arg, (long)f->min, (long)f->max));
    case TRC_REAL: return cJSON_CreateNumber(cli_double(flag, arg, f->min, f->max));
    case TRC_WORD: return cJSON_CreateString(f->words[cli_choice(flag, arg, f->words)]);
    case TRC_STRING: case TRC_LIST: return cJSON_CreateString(arg);
    case TRC_SWITCH: return cJSON_CreateTrue();
    }
    return NULL;
}

static _Noreturn void out_of_memory(void) { cli_die("out of memory"); }

/* The common entries of every trainer's option table. */
static const struct option common_options[] = {
    { "data",         required_argument, NULL, TRC_OPT_DATA },
    { "val-data",     required_argument, NULL, TRC_OPT_VAL_DATA },
    { "seed",         required_argument, NULL, TRC_OPT_SEED },
    { "split-seed",   required_argument, NULL, TRC_OPT_SPLIT_SEED },
    { "steps",        required_argument, NULL, TRC_OPT_STEPS },
    { "batch-size",   required_argument, NULL, TRC_OPT_BATCH_SIZE },
    { "lr",           required_argument, NULL, TRC_OPT_LR },
    { "weight-decay", required_argument, NULL, TRC_OPT_WEIGHT_DECAY },
    { "schedule",     required_argument, NULL, TRC_OPT_SCHEDULE },
    { "warmup",       required_argument, NULL, TRC_OPT_WARMUP },
    { "clip",         required_argument, NULL, TRC_OPT_CLIP },
    { "eval-every",   required_argument, NULL, TRC_OPT_EVAL_EVERY },
    { "log",          required_argument, NULL, TRC_OPT_LOG },
    { "output",       required_argument, NULL, 'o' },
    { "resume",       required_argument, NULL, TRC_OPT_RESUME },
    { "keep-best",    no_argument,       NULL, TRC_OPT_KEEP_BEST },
    { "threads",      required_argument, NULL, TRC_OPT_THREADS },
    { "dump-split",   required_argument, NULL, TRC_OPT_DUMP_SPLIT },
    { "ema",          required_argument, NULL, TRC_OPT_EMA },
    { "model-only",   no_argument,       NULL, TRC_OPT_MODEL_ONLY },
    { "samples",      required_argument, NULL, TRC_OPT_SAMPLES },
    { "swa-start",    required_argument, NULL, TRC_OPT_SWA_START },
    { "stop-after",   required_argument, NULL, TRC_OPT_STOP_AFTER },
    { "input-noise",  required_argument, NULL, TRC_OPT_INPUT_NOISE },
    { "fold",         required_argument, NULL, TRC_OPT_FOLD },
    { "teacher",      required_argument, NULL, TRC_OPT_TEACHER },
    { "distill-weight", required_argument, NULL, TRC_OPT_DISTILL_WEIGHT },
    { "help",         no_argument,       NULL, 'h' },
    { "version",      no_argument,       NULL, 'V' },
};

enum { N_COMMON = sizeof common_options / sizeof common_options[0] };

/* The model flag of a getopt code (long code or short letter); NULL if none. */
static const trc_flag *model_flag(const trc_flag *flags, int n, int code)
{
    if (code >= TRC_OPT_END && code < TRC_OPT_END + n) return &flags[code - TRC_OPT_END];
    for (int i = 0; i < n && code > 0; i++)
        if (flags[i].short_name == code) return &flags[i];
    return NULL;
}

cJSON *trc_parse(int argc, char **argv, tr_options *o, const trc_flag *flags,
                 void (*usage)(const tr_options *o))
{
    struct option opts[N_COMMON + TRC_MAX_FLAGS + 1] = { { 0 } };
    char shorts[8 + 2 * TRC_MAX_FLAGS] = "o:hV";
    int n = 0;
    memcpy(opts, common_options, sizeof common_options);
    for (; flags && flags[n].name; n++) {
        if (n == TRC_MAX_FLAGS) cli_die("too many model flags");   /* a programming error */
        int arg = flags[n].type == TRC_SWITCH ? no_argument : required_argument;
        opts[N_COMMON + n] = (struct option){ flags[n].name, arg, NULL, TRC_OPT_END + n };
        if (flags[n].short_name) {
            size_t len = strlen(shorts);
            shorts[len] = flags[n].short_name;
            shorts[len + 1] = ':';
        }
    }
    cJSON *given = cJSON_CreateObject();
    if (!given) out_of_memory();
    int c;
    while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        if (trc_parse_option(o, c, optarg)) continue;
        const trc_flag *f = model_flag(flags, n, c);
        if (f) {
            cJSON *v = flag_value(f, optarg);
            if (!v) out_of_memory();
            if (f->type == TRC_LIST) {   /* every one counts, in order */
                cJSON *list = cJSON_GetObjectItemCaseSensitive(given, f->key);
                if (!list && !(list = cJSON_AddArrayToObject(given, f->key))) out_of_memory();
                cJSON_AddItemToArray(list, v);
                continue;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(given, f->key);   /* the last one counts */
            cJSON_AddItemToObject(given, f->key, v);
            continue;
        }
        switch (c) {
        case 'h': usage(o); exit(EXIT_SUCCESS);   /* usage exits; in case it does not */
        case 'V': cli_version();
        default:  cli_bad_flag();
        }
    }
    return given;
}

void trc_open(tr_session *s, const tr_options *o)
{
    tr_options with_env = *o;
    const char *check = getenv("VILLES_CHECK_NAN");
    with_env.check_finite = check && !strcmp(check, "1");
    if (tr_open(s, &with_env) || prv_add_data(o->data) || prv_add_data(o->val_data)) cli_die_err();
    s->comm = trm_start();   /* NULL unless built with MPI and run by mpirun -np N > 1 */
    cli_set_threads(o->threads);
}


static err_code dump_names(const ds_names *d, const txt_vocab *v, const char *dir,
                           const char *file)
{
    char path[4200], tok[8];
    snprintf(path, sizeof path, "%.4096s/%s", dir, file);
    FILE *f = cli_open_write(path);
    if (!f) return ERR_IO;
    for (size_t i = 0; i < d->n; i++) {
        for (int j = 0; j < ds_len(d, i); j++) fputs(txt_token_str(v, ds_name(d, i)[j], tok), f);
        fputc('\n', f);
    }
    return cli_close(f, path);
}



void trc_load_names(tr_session *s)
{
    err_code rc = tr_load_names(s);
    const char *dir = s->o.dump_split;
    if (!rc && dir) rc = dump_names(&s->corpus.train, s->vocab, dir, "train.txt");
    if (!rc && dir) rc = dump_names(&s->corpus.val, s->vocab, dir, "val.txt");
    size_t too_long = 0;
    if (!rc) rc = dst_soft_targets(s, &too_long);
    if (rc) cli_die_err();
    if (too_long)
        fprintf(stderr, "%s: note: %zu training name(s) too long for their teacher learn "
                "from the data alone\n", cli_prog(), too_long);
}

/* ---- the config ------------------------------------------------------------ */

/* A flag's value against the checkpoint's: numbers as the float a config
 * stores unless both are integers, strings exactly. */
static bool same_value(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) {
        double x = a->valuedouble, y = b->valuedouble;
        bool real = x != floor(x) || y != floor(y);
        return x == y || (real && (float)x == (float)y);
    }
    return cJSON_IsString(a) && cJSON_IsString(b) && !strcmp(a->valuestring, b->valuestring);
}

/* The value a config holds for the member of flag f when it lacks it (a
 * member written only when not at its default): 0, or f's first word. */
static cJSON *absent_value(const trc_flag *flags, const char *key)
{
    for (int i = 0; flags && flags[i].name; i++)
        if (!strcmp(flags[i].key, key))
            return flags[i].type == TRC_WORD ? cJSON_CreateString(flags[i].words[0])
                                             : cJSON_CreateNumber(0);
    return NULL;
}

/* On --resume: the flag g agrees with the checkpoint's config c (whose
 * missing members are at their defaults). */
static bool agrees(const cJSON *g, const cJSON *c, const char *defaults_json, const trc_flag *flags)
{
    const cJSON *have = cJSON_GetObjectItemCaseSensitive(c, g->string);
    if (have) return same_value(g, have);
    cJSON *d = cJSON_Parse(defaults_json);
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(d, g->string);
    cJSON *zero = dv ? NULL : absent_value(flags, g->string);
    bool same = same_value(g, dv ? dv : zero);
    cJSON_Delete(zero);
    cJSON_Delete(d);
    return same;
}

cJSON *trc_config(const tr_session *s, const char *defaults_json, const cJSON *given,
                  const trc_flag *flags)
{
    const char *path = s->o.resume_path;
    const char *text = s->resuming ? ck_meta(&s->resume, "config") : defaults_json;
    if (!text) cli_die("%s: no config in the metadata", path);
    cJSON *c = cJSON_Parse(text);
    if (!cJSON_IsObject(c)) cli_die("%s: the config is not a JSON object", s->resuming ? path : "defaults");
    const cJSON *g;
    cJSON_ArrayForEach(g, given) {
        if (s->resuming) {
            if (!agrees(g, c, defaults_json, flags))
                cli_usage("model flags differ from the configuration in %s", path);
            continue;
        }
        cJSON *v = cJSON_Duplicate(g, true);
        if (!v) out_of_memory();
        cJSON_DeleteItemFromObjectCaseSensitive(c, g->string);
        cJSON_AddItemToObject(c, g->string, v);
    }
    return c;
}

void trc_config_fresh(const tr_session *s, cJSON *config, const cJSON *given, const char *key,
                      double value)
{
    if (s->resuming || cJSON_HasObjectItem(given, key)) return;
    cJSON *v = cJSON_CreateNumber(value);
    if (!v) out_of_memory();
    cJSON_DeleteItemFromObjectCaseSensitive(config, key);
    cJSON_AddItemToObject(config, key, v);
}

char *trc_config_finish(const tr_session *s, cJSON *config, const cJSON *given)
{
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(config, "vocab_size");
    if (!cJSON_IsNumber(size) || size->valuedouble <= 0)
        trc_config_fresh(s, config, given, "vocab_size", s->vocab->size);
    char *text = cJSON_PrintUnformatted(config);
    if (!text) out_of_memory();
    cJSON_Delete(config);
    return text;
}

void trc_config_error(const tr_session *s)
{
    if (s->resuming) cli_die("%s: %s", s->o.resume_path, err_msg());
    cli_usage("%s", err_msg());
}


/* ---- signals ------------------------------------------------------------ */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

typedef struct saved_handlers { struct sigaction intr, term; } saved_handlers;

/* SA_RESETHAND: a second Ctrl-C kills at once (the files on disk are
 * always whole, being written by rename). */
static void catch_signals(saved_handlers *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old->intr);
    sigaction(SIGTERM, &sa, &old->term);
}

static void restore_signals(const saved_handlers *old)
{
    sigaction(SIGINT, &old->intr, NULL);
    sigaction(SIGTERM, &old->term, NULL);
}

int trc_exit_status(err_code e)
{
    if (e == ERR_OK || e == ERR_INTERRUPT) trm_finish();   /* all processes ended together */
    if (e == ERR_OK) return 0;
    if (e == ERR_INTERRUPT && trm_rank()) return 128 + (stop_signal ? stop_signal : SIGINT);
    fprintf(stderr, "%s: %s\n", cli_prog(), err_msg());
    return e == ERR_INTERRUPT ? 128 + (stop_signal ? stop_signal : SIGINT) : 1;
}



/* ---- the run ------------------------------------------------------------------ */

static bool stop_requested(void *ctx) { return stop_signal != 0; }

/* What the hooks share: the progress line's clock, and the samples (NULL
 * without --samples) with the line shown under the progress line. */
typedef struct run_view {
    double       last_progress;
    trs_sampler *samples;
    bool         shown;            /* a samples line is on the screen */
} run_view;

static void format_duration(double sec, char *out, size_t cap)
{
    long t = (long)(sec + 0.5);
    if (t >= 3600) snprintf(out, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
}

/* The \r-rewritten progress line, at most five times a second. */
static void show_progress(void *ctx, const tr_session *s, float loss, double train_seconds)
{
    run_view *v = ctx;
    double t = cli_now();
    if (t - v->last_progress < 0.2) return;
    v->last_progress = t;
    double rate = train_seconds > 0 ? (double)s->sum.run_steps / train_seconds : 0;
    char eta[32] = "?";
    if (rate > 0) format_duration((double)(s->o.steps - s->step) / rate, eta, sizeof eta);
    fprintf(stderr, "\r\033[Kstep %ld/%ld  loss %.4f  %.0f tok/s  ETA %s", s->step, s->o.steps,
            (double)loss, train_seconds > 0 ? s->sum.tokens / train_seconds : 0.0, eta);
    fflush(stderr);
}

/* --samples: sample at each evaluation; on a terminal, the line under the
 * progress line shows the step's names (cursor back up on the progress line). */
static void sample_names(void *ctx, const tr_session *s, double val_loss)
{
    run_view *v = ctx;
    if (trs_sample(v->samples, s->o.seed, s->step) || !cli_progress_enabled()) return;
    char line[160], names[128];
    trs_show(v->samples, names, sizeof names, 80);
    snprintf(line, sizeof line, "step %ld  val %.4f  copied %.0f%%: %s", s->step, val_loss,
             100 * v->samples->copied, names);
    fprintf(stderr, "\n\r\033[K%s\033[A\r", line);
    fflush(stderr);
    v->shown = true;
}

static void log_samples(void *ctx, const tr_session *s, FILE *log)
{
    trs_log_values(((run_view *)ctx)->samples, log);
}

static void clear_progress(const run_view *v)
{
    if (!cli_progress_enabled()) return;
    fputs(v->shown ? "\r\033[K\n\033[K\033[A\r" : "\r\033[K", stderr);
}

/* The summary columns of m->summary_columns: its output (malloc'ed, in
 * *text), cut into the header and the values without their newlines. */
static err_code extra_columns(const tr_model *m, char **text, char **header, char **values)
{
    size_t len = 0;
    *text = *header = *values = NULL;
    FILE *f = open_memstream(text, &len);
    if (!f) return err_set(ERR_NOMEM, "out of memory for the summary");
    err_code rc = m->summary_columns(m->impl, f);
    if (fclose(f) && !rc) rc = err_set(ERR_NOMEM, "out of memory for the summary");
    if (rc) return rc;
    if (!*text) return err_set(ERR_NOMEM, "out of memory for the summary");
    char *nl = strchr(*text, '\n'), *end = nl ? strchr(nl + 1, '\n') : NULL;
    size_t tabs[2] = { 0, 0 };
    for (const char *p = *text; end && p < end; p++) tabs[p > nl] += *p == '\t';
    if (!end || end[1] || nl == *text || end == nl + 1 || tabs[0] != tabs[1])
        return err_set(ERR_ARG, "%s: the summary columns are not a two-line TSV", m->kind);
    *nl = *end = '\0';
    *header = *text;
    *values = nl + 1;
    return ERR_OK;
}

static err_code print_summary(const tr_session *s, const tr_model *m)
{
    char *text = NULL, *header = NULL, *values = NULL;
    err_code rc = m->summary_columns ? extra_columns(m, &text, &header, &values) : ERR_OK;
    if (rc) {
        free(text);
        return rc;
    }
    const tr_summary *u = &s->sum;
    size_t params = 0;   /* p->n also counts the alignment padding */
    for (int i = 0; i < m->params->count; i++) params += (size_t)m->params->e[i].t.n;
    printf("model\tparams\tsteps\ttrain_loss\tval_loss\tbest_val_loss\tbest_step\tseconds\t"
           "steps_per_s\ttokens_per_s%s%s\n", header ? "\t" : "", header ? header : "");
    printf("%s\t%zu\t%ld\t%.6f\t%.6f\t%.6f\t%ld\t%.2f\t%.2f\t%.0f%s%s\n", m->kind, params,
           u->steps, u->train_loss, u->val_loss, u->best_val_loss, u->best_step, u->seconds,
           u->train_seconds > 0 ? (double)u->run_steps / u->train_seconds : 0.0,
           u->train_seconds > 0 ? u->tokens / u->train_seconds : 0.0, values ? "\t" : "",
           values ? values : "");
    fflush(stdout);
    free(text);
    return ERR_OK;
}


err_code trc_run(tr_session *s, const tr_model *m, const tr_source *src)
{
    run_view view = { 0 };
    bool first = trm_rank() == 0;   /* process 0 alone shows and prints */
    tr_hooks hooks = { .ctx = &view, .should_stop = stop_requested,
                       .on_step = first && cli_progress_enabled() ? show_progress : NULL };
    trs_sampler samples;
    if (s->o.samples > 0 && first) {
        if (src) cli_usage("--samples: this training has no names to sample");
        err_code e = trs_init(&samples, s, m, s->o.samples);
        if (e == ERR_ARG) cli_usage("%s", err_msg());
        if (e) cli_die_err();
        view.samples = &samples;
        hooks.on_eval = sample_names;
        hooks.log_columns = TRS_LOG_COLUMNS;
        hooks.log_values = log_samples;
    }
    /* data-parallel workers run their matrix products single-threaded */
    if (tr_workers(s, m, src) > 0) cli_set_threads(1);
    saved_handlers old;
    catch_signals(&old);
    err_code rc = tr_run(s, m, src, &hooks);
    restore_signals(&old);
    clear_progress(&view);
    if (view.samples) trs_free(view.samples);
    const tr_summary *u = &s->sum;
    if (!rc && getenv("VILLES_DP_PROFILE") && u->shard_cpu_max > 0)
        fprintf(stderr, "%s: data parallel: shards' CPU %.3f ms a step in all, %.3f ms the "
                "slowest (speed-up of that part on idle cores: %.2f)\n", cli_prog(),
                1e3 * u->shard_cpu_sum / (double)u->run_steps,
                1e3 * u->shard_cpu_max / (double)u->run_steps, u->shard_cpu_sum / u->shard_cpu_max);
    return rc || !first ? rc : print_summary(s, m);
}
