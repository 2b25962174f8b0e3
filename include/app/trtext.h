/* trtext.h - running text for any sequence trainer: the flags (--text,
 * --val-text, --window, --keep-gutenberg, --tokenizer, --vocab-size), their
 * help, the corpus (stream.h) and the walk over it.  A trainer whose model
 * has a loss from a carried state (stm_loss_fn; a state of 0 layers for a
 * model without one) switches it on with a few lines:
 *
 *   static const trc_flag flags[] = { ...model flags..., TRT_FLAGS, TRC_END_FLAGS };
 *   static trt_text text;                 // static: reachable to the end
 *   cJSON *given = trc_parse(argc, argv, &o, flags, usage);
 *   trt_take(&text, given, &o);           // before trc_check_args
 *   trc_open(&s, &o);
 *   trt_check_resume(&text, &s);          // a text model resumes with --text only
 *   ... config = trc_config(...) ...
 *   if (text.on) trt_load(&text, &s); else trc_load_names(&s);
 *   trt_config(&text, &s, config, given);  // vocab_size: the tokenizer's
 *   ... trc_config_finish, build the model ...
 *   if (text.on) trt_start(&text, &s, &sm, &m, &src);
 *   trc_run(&s, &m, text.on ? &src : NULL);
 *   trt_free(&text);
 *
 * Errors are the program's: usage errors exit 2, runtime errors exit 1.
 */
#ifndef VILLES_TRTEXT_H
#define VILLES_TRTEXT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#include "stream.h"
#include "trcli.h"

enum { TRT_DEFAULT_VOCAB = 1000, TRT_MAX_BOOKS = 256 };

extern const char *const trt_tokenizers[];   /* "char", "bpe", NULL */

/* The rows of the running-text flags, for a trainer's flag table. */
#define TRT_FLAGS                                                                  \
    TRC_LIST_FLAG("text", "text"), TRC_STRING_FLAG("val-text", "val_text", 0),     \
    TRC_INT_FLAG("window", "window", 1, STM_MAX_WINDOW),                           \
    TRC_SWITCH_FLAG("keep-gutenberg", "keep_gutenberg"),                           \
    TRC_WORD_FLAG("tokenizer", "tokenizer", trt_tokenizers),                       \
    TRC_INT_FLAG("vocab-size", "bpe_vocab_size", 4, BPE_MAX_TOKENS)

typedef struct trt_text {
    bool              on;           /* --text given */
    const char       *books[TRT_MAX_BOOKS];
    stm_text_options  opt;
    int               window;       /* --window, 0 = the checkpoint's or the default */
    bool              tok_given;    /* --tokenizer or --vocab-size given */
    bpe               resumed;      /* the checkpoint's tokenizer on --resume */
    stm_corpus        corpus;
    stm_source        walk;
} trt_text;

/* Take the running-text flags out of given (trc_parse's object) and check
 * them (usage errors); with --text, o->data names the first book. */
void trt_take(trt_text *t, cJSON *given, tr_options *o);
/* On --resume: the checkpoint is a running-text model (metadata tokenizer,
 * or an RNN's config "text") exactly when --text is given (usage error
 * otherwise), and --tokenizer / --vocab-size are not given. */
void trt_check_resume(const trt_text *t, const tr_session *s);
/* Read and tokenize the books (the checkpoint's tokenizer on --resume);
 * s->vocab is then the corpus's characters.  Exit 1 on error. */
void trt_load(trt_text *t, tr_session *s);
/* In text mode, the config's vocab_size for a fresh model: the tokens of
 * the tokenizer (characters and merges). */
void trt_config(const trt_text *t, const tr_session *s, cJSON *config, const cJSON *given);
/* The window in effect: --window, else the checkpoint's, else the default. */
int  trt_window(const trt_text *t, const tr_session *s);
/* The walk of sm over the corpus: the tr_model and tr_source for trc_run. */
void trt_start(trt_text *t, const tr_session *s, const stm_model *sm, tr_model *m,
               tr_source *src);
void trt_free(trt_text *t);
/* The "Running text:" part of --help. */
void trt_print_usage(FILE *f);

#endif
