/* rawf32.c - see rawf32.h. */
#include "rawf32.h"

#include <stdio.h>
#include <stdlib.h>

float *raw_f32_read(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	long len = -1;
	if (fseek(f, 0, SEEK_END) == 0)
		len = ftell(f);
	float *d = len >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)len + 1) : NULL;
	if (d && fread(d, 1, (size_t)len, f) != (size_t)len) {
		free(d);
		d = NULL;
	}
	fclose(f);
	*n = d ? (size_t)len / sizeof(float) : 0;
	return d;
}
