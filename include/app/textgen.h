/* textgen.h - generate's running-text runs on any model (model.h): sample
 * --chars characters, or score a text (--score on a model of running text).
 *
 * Tokens are the model's tokenizer's (m->tokens: characters, or BPE
 * subwords), decoded to characters on output; --chars counts characters
 * (the last token cut if need be).
 *
 * A model with a limited context (a Transformer: max_len positions) is
 * driven as follows.  Sampling slides the window: once max_len tokens are
 * fed, each new token restarts the model on the last max_len tokens, so
 * every prediction sees as much context as the model takes (it costs
 * max_len steps a token from then on).  Scoring cuts the text into windows
 * of max_len tokens, each seen afresh, as transformer-train evaluates
 * (with one track: the figure is the trainer's val_loss when it ran with
 * --batch-size 1, and can differ a little otherwise, the trainer walking
 * --batch-size tracks).  A model with a state (an RNN) carries it through
 * the whole text.
 */
#ifndef VILLES_TEXTGEN_H
#define VILLES_TEXTGEN_H

#include <stdbool.h>
#include <stdio.h>

#include "generation.h"
#include "model.h"

/* Whether m was trained on running text (its checkpoint names a tokenizer). */
bool     tg_is_text_model(const mdl *m);
/* --chars: o->chars characters after --prefix (default: after a newline, or
 * <SOS> when the vocabulary has none), then a newline, to out. */
err_code tg_sample(mdl_state *st, const gen_options *o, FILE *out);
/* --score FILE on a model of running text: the file read as the trainers
 * read --val-text (BOM, CRLF, NFC; Gutenberg header and footer dropped);
 * a TSV row to out (tokens chars total_loss loss_per_token loss_per_char)
 * and the mean loss per character to info. */
err_code tg_score(mdl_state *st, const gen_options *o, FILE *out, FILE *info);

#endif
