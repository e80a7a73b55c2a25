/* test_failpoint.c: the fail-point table: names, actions, counting, all-or-nothing config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/tl_failpoint.h"
#include "util/tl_time.h"

#include <stdio.h>
#include <string.h>

static int reset(void **s) {
  (void)s;
  tl_fp_clear_all();
  return 0;
}

static void test_known_names(void **s) {
  (void)s;
  assert_true(tl_fp_known("log.append"));
  assert_true(tl_fp_known("log.fsync"));
  assert_true(tl_fp_known("log.snapshot"));
  assert_true(tl_fp_known("log.commit"));
  assert_true(tl_fp_known("projection.orders.apply"));
  assert_true(tl_fp_known("projection.daily_sales.apply"));
  assert_true(tl_fp_known("saga.order_fulfilment.step"));
  assert_false(tl_fp_known("projection..apply"));
  assert_false(tl_fp_known("projection.a.b.apply"));
  assert_false(tl_fp_known("projection.Orders.apply"));
  assert_false(tl_fp_known("log.fsync2"));
  assert_false(tl_fp_known("saga.x.stepx"));
  assert_false(tl_fp_known(""));
  assert_false(tl_fp_known(NULL));
}

static void test_nothing_armed_never_fires(void **s) {
  (void)s;
  assert_int_equal(atomic_load(&tl_fp_armed), 0);
  for (int i = 0; i < 100; i++) assert_int_equal(tl_fp("log.fsync"), 0);
  tl_fp_info f;
  assert_int_equal(tl_fp_get("log.fsync", &f), TL_E_NOTFOUND);
}

static void test_error_fires_every_time_and_counts(void **s) {
  (void)s;
  assert_int_equal(tl_fp_set("log.append", "error", NULL), TL_OK);
  for (int i = 0; i < 5; i++) assert_int_equal(tl_fp("log.append"), 1);
  assert_int_equal(tl_fp("log.fsync"), 0); /* another point is not armed */
  tl_fp_info f;
  assert_int_equal(tl_fp_get("log.append", &f), TL_OK);
  assert_string_equal(f.action, "error");
  assert_int_equal(f.hits, 5);
  assert_int_equal(f.fired, 5);
  assert_int_equal(tl_fp_set("log.append", "off", NULL), TL_OK);
  assert_int_equal(tl_fp("log.append"), 0);
  assert_int_equal(atomic_load(&tl_fp_armed), 0);
}

static void test_error_n_fires_n_times(void **s) {
  (void)s;
  assert_int_equal(tl_fp_set("projection.orders.apply", "error*3", NULL), TL_OK);
  int fired = 0;
  for (int i = 0; i < 10; i++) fired += tl_fp("projection.orders.apply");
  assert_int_equal(fired, 3);
  tl_fp_info f;
  assert_int_equal(tl_fp_get("projection.orders.apply", &f), TL_OK);
  assert_int_equal(f.hits, 10);
  assert_int_equal(f.fired, 3);
  /* Re-arming starts counting again. */
  assert_int_equal(tl_fp_set("projection.orders.apply", "error*1", NULL), TL_OK);
  assert_int_equal(tl_fp("projection.orders.apply"), 1);
  assert_int_equal(tl_fp("projection.orders.apply"), 0);
}

static void test_delay_sleeps_and_passes(void **s) {
  (void)s;
  assert_int_equal(tl_fp_set("log.fsync", "delay:30", NULL), TL_OK);
  int64_t t0 = tl_mono_ns();
  assert_int_equal(tl_fp("log.fsync"), 0);
  assert_true(tl_mono_ns() - t0 >= 30 * 1000000LL);
  assert_int_equal(tl_fp_set("log.fsync", "delay:0", NULL), TL_OK);
  assert_int_equal(tl_fp("log.fsync"), 0);
}

static void test_bad_input_changes_nothing(void **s) {
  (void)s;
  static const char *const BAD_ACTIONS[] = {"",
                                            "err",
                                            "error*",
                                            "error*0",
                                            "error*-1",
                                            "error*1x",
                                            "error*99999999999",
                                            "delay:",
                                            "delay:-5",
                                            "delay:60001",
                                            "delay:5ms",
                                            "ERROR",
                                            "error ",
                                            "panic",
                                            "error*1234567890123456789012345678901234567890"};
  assert_int_equal(tl_fp_set("log.fsync", "error*2", NULL), TL_OK);
  for (size_t i = 0; i < sizeof BAD_ACTIONS / sizeof BAD_ACTIONS[0]; i++) {
    tl_err err = {0};
    assert_int_equal(tl_fp_set("log.fsync", BAD_ACTIONS[i], &err), TL_E_INVALID);
    assert_non_null(strstr(err.msg, "bad action"));
  }
  tl_err err = {0};
  assert_int_equal(tl_fp_set("disk.melt", "error", &err), TL_E_INVALID);
  assert_non_null(strstr(err.msg, "unknown fail point"));
  tl_fp_info f;
  assert_int_equal(tl_fp_get("log.fsync", &f), TL_OK);
  assert_string_equal(f.action, "error*2"); /* untouched */
  assert_int_equal(atomic_load(&tl_fp_armed), 1);
}

static void test_configure_is_all_or_nothing(void **s) {
  (void)s;
  assert_int_equal(
      tl_fp_configure(" log.append = error*2 ; ;saga.order_fulfilment.step=delay:1 ", NULL), TL_OK);
  tl_fp_info list[TL_FP_MAX];
  assert_int_equal(tl_fp_list(list, TL_FP_MAX), 2);
  assert_string_equal(list[0].point, "log.append");
  assert_string_equal(list[0].action, "error*2");
  assert_string_equal(list[1].point, "saga.order_fulfilment.step");
  /* One bad item: nothing of the specification applies. */
  tl_err err = {0};
  assert_int_equal(tl_fp_configure("log.fsync=error;log.append=bogus", &err), TL_E_INVALID);
  assert_int_equal(tl_fp_list(list, TL_FP_MAX), 2);
  assert_int_equal(tl_fp_get("log.fsync", &list[0]), TL_E_NOTFOUND);
  assert_int_equal(tl_fp_configure("log.fsync", &err), TL_E_INVALID); /* no '=' */
  assert_int_equal(tl_fp_configure("", NULL), TL_OK);
  assert_int_equal(tl_fp_configure("log.append=off", NULL), TL_OK);
  assert_int_equal(tl_fp_list(list, TL_FP_MAX), 1);
}

static void test_table_is_bounded(void **s) {
  (void)s;
  char name[TL_FP_NAME_MAX];
  for (int i = 0; i < TL_FP_MAX; i++) {
    snprintf(name, sizeof name, "projection.p%d.apply", i);
    assert_int_equal(tl_fp_set(name, "error", NULL), TL_OK);
  }
  tl_err err = {0};
  assert_int_equal(tl_fp_set("log.fsync", "error", &err), TL_E_INVALID);
  assert_int_equal(tl_fp_set("projection.p0.apply", "error*1", NULL), TL_OK); /* re-arm fits */
  assert_int_equal(atomic_load(&tl_fp_armed), TL_FP_MAX);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_known_names, reset),
      cmocka_unit_test_setup(test_nothing_armed_never_fires, reset),
      cmocka_unit_test_setup(test_error_fires_every_time_and_counts, reset),
      cmocka_unit_test_setup(test_error_n_fires_n_times, reset),
      cmocka_unit_test_setup(test_delay_sleeps_and_passes, reset),
      cmocka_unit_test_setup(test_bad_input_changes_nothing, reset),
      cmocka_unit_test_setup(test_configure_is_all_or_nothing, reset),
      cmocka_unit_test_setup(test_table_is_bounded, reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
