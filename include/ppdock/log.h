/* ppdock/log.h — leveled logging to stderr.
 *
 * Messages go to stderr as "<tool>: <level>: <message>" (level omitted for info). The level is
 * process-wide: tools map -q to PPD_LOG_WARN and -v / -vv to PPD_LOG_DEBUG / PPD_LOG_TRACE.
 * Logging is thread-safe (one fputs per message) and never fails.
 */
#ifndef PPDOCK_LOG_H
#define PPDOCK_LOG_H

typedef enum {
    PPD_LOG_ERROR = 0,
    PPD_LOG_WARN = 1,
    PPD_LOG_INFO = 2,
    PPD_LOG_DEBUG = 3,
    PPD_LOG_TRACE = 4
} ppd_log_level;

void ppd_log_set_level(ppd_log_level level);
ppd_log_level ppd_log_get_level(void);
/* Program name used as the message prefix (default "ppdock"). The string must outlive logging. */
void ppd_log_set_prog(const char *prog);

void ppd_log(ppd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ppd_error(...) ppd_log(PPD_LOG_ERROR, __VA_ARGS__)
#define ppd_warn(...)  ppd_log(PPD_LOG_WARN, __VA_ARGS__)
#define ppd_info(...)  ppd_log(PPD_LOG_INFO, __VA_ARGS__)
#define ppd_debug(...) ppd_log(PPD_LOG_DEBUG, __VA_ARGS__)

#endif
