/* stream.h - running text as a training source: one stream of characters
 * cut into windows, a sequence model's state carried from one window to
 * the next (rnn-train --text; next the Transformer and Mamba on text).
 *
 * The corpus: the training files are one stream of characters (no <SOS> /
 * <EOS> per line), Project Gutenberg's header and footer dropped; its last
 * 10% is the validation stream unless a validation file is given.  The
 * tokens are characters, or BPE subwords learned from the training stream
 * (bpe.h); the vocabulary and tokenizer can also be a checkpoint's (on
 * --resume).
 *
 * The walk: the training stream is cut into B tracks of equal length (B =
 * the batch size), walked side by side one window of W characters per
 * step; each track's state is carried from one window to the next
 * (truncated backpropagation: gradients stop at the window boundary) and
 * starts from the model's learned initial state at the beginning of every
 * pass over the tracks.  The validation stream is walked the same way (min(B,
 * n_val - 1) tracks), its every character predicted once.
 *
 * A model without a state (the Transformer: state_layers 0) sees each
 * window afresh.  The model plugs in with a loss that takes and returns a
 * state:
 *
 *   stm_corpus c;                       // vocabulary and the two streams
 *   const char *books[] = { "moliere.txt" };
 *   stm_corpus_load(&c, &(stm_text_options){ .books = books, .n_books = 1 });
 *   ... build the model on c.vocab.size tokens ...
 *   stm_model sm = { .kind = "rnn", .params = &net.p, .impl = &net,
 *                    .loss_state = net_loss_state, .config_json = net_config,
 *                    .state_layers = n_layers, .state_width = d_model };
 *   stm_source st;
 *   stm_source_init(&st, &sm, &c, stm_window(resume_or_NULL, given), batch_size);
 *   tr_model m = stm_tr_model(&st);     // its loss carries the state
 *   tr_source src = stm_tr_source(&st);
 *   tr_run(&session, &m, &src, hooks);  // with session.vocab = &c.vocab
 *
 * Checkpoints keep the walk: metadata source.pos (windows of the current
 * pass already trained) and source.window (W), and the tensor source.state
 * (state_layers, B, state_width) when there is a state, so that --resume
 * continues exactly; and the tokenizer (stm_put_tokenizer).
 *
 * Losses: the loop's are per token; the source also keeps the last
 * evaluation's total, so that the summary adds val_chars and
 * val_loss_per_char (total nats / characters predicted), which compare
 * across tokenizers.
 */
#ifndef VILLES_STREAM_H
#define VILLES_STREAM_H

#include <stddef.h>

#include <stdbool.h>

#include "autograd.h"
#include "bpe.h"
#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "tensor.h"
#include "text.h"
#include "train.h"

enum { STM_DEFAULT_WINDOW = 128, STM_MAX_WINDOW = 1 << 16 };

/* ---- the corpus ---------------------------------------------------------- */

/* How the running text is prepared (stm_corpus_load). */
typedef struct stm_text_options {
    const char *const *books;   /* the training files, read in order and joined */
    int                n_books;
    const char        *val_path;   /* a whole file held out; NULL = the last 10%
                                      of the training characters validate */
    bool               keep_gutenberg;   /* false: drop Project Gutenberg's header
                                            and footer (stm_strip_gutenberg) */
    int                vocab_size;   /* 0: characters; else a BPE tokenizer of
                                        this many tokens learned (bpe.h) */
    const bpe         *given;   /* a tokenizer to use instead (a checkpoint's, on
                                   --resume: stm_read_tokenizer), NULL = none */
} stm_text_options;

typedef struct stm_corpus {
    txt_vocab vocab;            /* the characters of every stream */
    bpe       tok;              /* the tokenizer (no merges: characters) */
    bool      subwords;         /* tokenizer "bpe" (else "char") */
    int      *train, *val;      /* (n_train), (n_val) tokens */
    size_t    n_train, n_val;
    size_t    val_chars;        /* characters of the validation tokens predicted
                                   (all but the first token's) */
} stm_corpus;

/* Read the books and the validation file with txt_read_stream (BOM
 * skipped, CRLF read as LF, NFC; invalid UTF-8 an error naming the file,
 * line and byte), drop each one's Gutenberg header and footer unless
 * keep_gutenberg, join the books, split off the last 10% unless val_path,
 * then tokenize: the vocabulary is the characters of all the text; with
 * vocab_size, BPE merges learned from the training text only.  With
 * o->given, its characters and merges instead (a character outside them an
 * error naming the file).  A validation stream of fewer than 2 tokens is an
 * error ("FILE: the validation stream is too short").  On error c is left
 * empty. */
err_code stm_corpus_load(stm_corpus *c, const stm_text_options *o);
void     stm_corpus_free(stm_corpus *c);

/* Drop a Project Gutenberg header and footer from the code points cp (*n):
 * everything up to the end of the line that starts with "*** START OF",
 * and from the line that starts with "*** END OF" on (each only when
 * present; spaces after the asterisks optional).  Returns how many of the
 * two markers were found. */
int stm_strip_gutenberg(int32_t *cp, size_t *n);

/* The checkpoint's metadata of a running-text model: "tokenizer" ("char"
 * or "bpe") and, for "bpe", "merges" (JSON). */
err_code stm_put_tokenizer(ck_writer *w, const stm_corpus *c);
/* Whether f is a running-text model (metadata "tokenizer"). */
bool     stm_is_text_model(const ck_file *f);
/* The tokenizer of checkpoint f (read from path): its vocabulary with the
 * merges of metadata "merges" when "tokenizer" is "bpe", none otherwise;
 * ERR_FORMAT naming path on a bad vocabulary or merges. */
err_code stm_read_tokenizer(const ck_file *f, const char *path, bpe *b);

/* ---- tracks and windows -------------------------------------------------- */

/* Tracks of a token stream: track b predicts tok[start[b] + i + 1] from
 * tok[start[b] + i] for i < len[b]. */
typedef struct stm_tracks {
    int     B;
    size_t *start, *len;        /* (B) */
    size_t  longest;            /* len[0] */
} stm_tracks;

/* Split the n - 1 (input, target) pairs of a stream of n tokens into B
 * tracks, the first (n - 1) % B one pair longer, so that every pair is in
 * exactly one.  ERR_ARG "a stream of N characters is too short for B
 * tracks" when n - 1 < B. */
err_code stm_tracks_init(stm_tracks *k, size_t n, int B);
void     stm_tracks_free(stm_tracks *k);
/* Windows of W characters in one pass: ceil(longest / W). */
size_t   stm_n_windows(const stm_tracks *k, int W);
/* The (B, T) batch of window w: characters w*W .. w*W + W - 1 of each
 * track, <pad> past a track's end; T = min(W, longest - w*W).  Grows b's
 * buffers only when needed. */
err_code stm_fill_window(ds_batch *b, const int *tok, const stm_tracks *k, size_t w, int W);

/* ---- the model side ------------------------------------------------------ */

/* Mean loss over the non-pad targets of b (scalar, on t), starting from
 * state h_in (NULL = the model's initial state; a constant, no gradient
 * flows into it) and writing each row's state after its last real step to
 * h_out (may alias h_in).  NULL with err_set on error. */
typedef tensor *(*stm_loss_fn)(void *impl, ag_tape *t, const ds_batch *b, const float *h_in,
                               float *h_out);

/* A sequence model with a carried state.  The state of a batch of B rows
 * is (state_layers, B, state_width) floats, batch row by batch row within
 * each layer, as rnn_forward's h_in (the RNN: n_layers, d_model); the
 * module allocates it, saves it under that shape, and reads nothing in it. */
typedef struct stm_model {
    const char  *kind;          /* metadata "model" */
    tn_params   *params;
    void        *impl;          /* passed to loss_state and config_json */
    stm_loss_fn  loss_state;
    char      *(*config_json)(const void *impl);   /* as tr_model's */
    int          state_layers, state_width;
} stm_model;

/* ---- the source ---------------------------------------------------------- */

/* The walk over a corpus; must not move once initialised (the tr_model and
 * tr_source point at it). */
typedef struct stm_source {
    stm_model         m;
    const stm_corpus *c;
    int               window;   /* W */
    stm_tracks        tracks;   /* of the training stream, B = batch size */
    size_t            pos;      /* windows of the current pass already trained */
    float            *state;    /* (state_layers, B, state_width) carried state */
    const float      *h_in;     /* state of the next training loss (NULL = initial) */
    double            val_nats; /* the last evaluation: total loss */
} stm_source;

/* The walk of c's training stream in batch_size tracks of windows of
 * `window` characters, at its start.  m is copied; c must outlive s. */
err_code stm_source_init(stm_source *s, const stm_model *m, const stm_corpus *c, int window,
                         int batch_size);
void     stm_source_free(stm_source *s);
/* The model as the loop sees it: its loss is m->loss_state from the
 * carried state of the current window (set by the source's next); it puts
 * the tokenizer in the checkpoint, and the summary columns val_chars and
 * val_loss_per_char. */
tr_model  stm_tr_model(stm_source *s);
/* next: the next window (a new pass after the last one; the loop's rng is
 * not used); eval: the whole validation stream; save / load: source.pos,
 * source.window, source.state. */
tr_source stm_tr_source(stm_source *s);

/* The window to use: given (> 0), else that of the checkpoint resumed
 * (metadata source.window, if valid; resume may be NULL), else
 * STM_DEFAULT_WINDOW. */
int stm_window(const ck_file *resume, int given);

#endif
