/*
 * tl_time.h: wall-clock and monotonic time, and the ISO 8601 UTC text form used on the wire
 * ("2026-11-22T10:30:00.123Z", always milliseconds).
 */
#ifndef TL_TIME_H
#define TL_TIME_H

#include <stdint.h>

#define TL_ISO_LEN 25 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" plus NUL */

int64_t tl_now_ms(void);   /* milliseconds since the Unix epoch (CLOCK_REALTIME) */
int64_t tl_mono_ns(void);  /* monotonic nanoseconds, for durations */

struct timespec;
/* The CLOCK_MONOTONIC time timeout_ms from now, for pthread_cond_timedwait on a condition
 * variable created with pthread_condattr_setclock(CLOCK_MONOTONIC). */
void tl_deadline_in(struct timespec *out, int timeout_ms);

/* Formats ms since the epoch into out (TL_ISO_LEN bytes). Any int64 is formatted; years
 * outside 0000-9999 do not read back. */
void tl_time_format(int64_t ms, char out[TL_ISO_LEN]);

/* Parses an ISO 8601 UTC time: "YYYY-MM-DDTHH:MM:SS[.fff]Z" (also "+00:00"). Returns 0 and sets
 * *ms, or TL_E_INVALID. */
int tl_time_parse(const char *s, int64_t *ms);

/* Parses "YYYY-MM-DD" into days since the epoch; TL_E_INVALID on a bad or impossible date. */
int tl_date_parse(const char *s, int64_t *days);

/* The days an int64 of milliseconds can fall on: the range tl_date_format accepts. */
#define TL_DAYS_MIN (INT64_MIN / 86400000 - 1)
#define TL_DAYS_MAX (INT64_MAX / 86400000)

/* Formats days since the epoch (TL_DAYS_MIN to TL_DAYS_MAX, asserted) as "YYYY-MM-DD" (11 bytes
 * with NUL). */
void tl_date_format(int64_t days, char out[11]);

#endif
