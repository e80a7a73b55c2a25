/*
 * upcast.h: event schema versions and the upcasters that lift stored events to the latest.
 *
 * Every event type has a latest schema version (written with new events). An older stored event
 * is lifted one version at a time by the upcaster registered for (type, from_version) when it is
 * read, so deciders, projections and process managers only ever see the latest shape. Stored
 * events are never rewritten: `twinlane export` shows them as they were recorded.
 *
 * Registered today: OrderPlaced v1 (no currency) -> v2 (currency "USD").
 */
#ifndef TL_UPCAST_H
#define TL_UPCAST_H

#include "util/tl_common.h"

/* The schema version new events of `type` are written with. */
int tl_event_schema_version(const char *type);

/* Lifts data (JSON text of an event of `type` at schema `version`) to the latest version.
 * Returns 0 with *out NULL when nothing is to do (already latest, or a type without
 * upcasters), 0 with *out (malloc'd JSON text) and *out_version set when lifted,
 * TL_E_INVALID when the data is unreadable or no upcaster covers the version (a version
 * newer than this build knows, or a gap), TL_E_NOMEM. */
int tl_upcast(const char *type, int version, const char *data, char **out, int *out_version);

#endif
