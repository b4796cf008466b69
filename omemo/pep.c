/* pep.c: placeholder */
#include "omemo/omemo_int.h"
void omemo_net_free(struct mw_omemo *o) { (void)o; }
int omemo_pep_bundle_changed(struct mw_omemo *o) { (void)o; return 0; }
