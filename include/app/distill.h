/* distill.h - soft targets from out-of-fold teachers, for the trainers'
 * --teacher FILE (repeatable) and --distill-weight A.
 *
 * Every teacher is a checkpoint of any kind (mix included) trained with
 * --fold K/N: its metadata "fold" (for a mix, that of every component,
 * which must agree) names the fold it did not train on, and "split_seed"
 * the split it came from, which must be the student's (otherwise it saw the
 * student's validation names).  A training name of fold k (ds_fold_of) takes
 * its soft targets from the teacher of fold k only, which never saw it.
 * Refused with one line: a teacher without a fold, teachers of different N
 * or of the same fold, a fold of the student's training names without its
 * teacher, another vocabulary.
 *
 * The teachers' next-token probabilities at every target of every training
 * name are computed once, before training, through the model interface
 * (cached states: no prefix recomputed), into one buffer (tr_session.soft,
 * layout in train.h); the loop only copies rows of it.  On --resume they are
 * computed again from the same files, the same way: the run stays bit-exact.
 */
#ifndef VILLES_DISTILL_H
#define VILLES_DISTILL_H

#include "error.h"
#include "train.h"

/* With s->o.distill_weight > 0: load s->o.teacher[], check them against
 * s's vocabulary, split seed and training names, and fill s->soft.
 * Otherwise nothing.  A training name longer than its teacher can take (a
 * Transformer teacher sized on fewer names) keeps its own one-hot targets:
 * *too_long counts them.  Call after tr_load_names. */
err_code dst_soft_targets(tr_session *s, size_t *too_long);

#endif
