/* main.c: twinlane's command-line dispatcher. */
#include "cli/tl_cli.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    tl_cli_usage(argc < 2);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "serve") == 0) return tl_cli_serve(argc - 1, argv + 1);
  if (strcmp(argv[1], "dlq") == 0) return tl_cli_dlq(argc - 1, argv + 1);
  if (strcmp(argv[1], "reconcile") == 0) return tl_cli_reconcile(argc - 1, argv + 1);
  if (strcmp(argv[1], "projections") == 0) return tl_cli_projections(argc - 1, argv + 1);
  if (strcmp(argv[1], "export") == 0) return tl_cli_export(argc - 1, argv + 1);
  if (strcmp(argv[1], "import") == 0) return tl_cli_import(argc - 1, argv + 1);
  if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
    printf("twinlane %s\n", TL_VERSION);
    return 0;
  }
  fprintf(stderr, "twinlane: unknown command '%s'\n\n", argv[1]);
  tl_cli_usage(1);
  return 2;
}
