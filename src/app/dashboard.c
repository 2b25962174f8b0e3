/* dashboard.c - explore dashboard (in progress). */
#include "explore.h"

void xp_dashboard(const xp_options *o)
{
    (void)o;
    cli_die("explore dashboard is not built yet");
}
