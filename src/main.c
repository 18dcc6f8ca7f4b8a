/* main.c - the sfa command line: dispatch to subcommands only. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "version") == 0) {
		puts("sfa 0.1.0");
		return 0;
	}
	fprintf(stderr, "usage: sfa version\n");
	return 2;
}
