/*
 * search_groups.h: which cached searches a changed order can touch.
 *
 * A search finds an order when each of its words is a prefix of one of the tokens of the
 * order's product names (FTS5's unicode61 tokenizer: runs of letters and digits, case-folded).
 * The read lane caches searches in groups named by the first one or two characters of one of
 * their words, lowercased (tl_search_group_of); a changed order touches the groups of the first
 * one and the first two characters of each of its tokens (tl_search_touch_items). So a search
 * that could show the order, new or changed while on its page, is in a touched group: any word
 * of the search prefixes one of the order's tokens, and so shares its first one or two
 * characters with that token. Only ASCII is told apart: a search with no word starting with
 * two ASCII letters or digits (or one, ending the word) is not cached, and names with a
 * non-ASCII byte touch every search (unicode61 folds and splits non-ASCII text in ways the
 * bytes do not show). More touched than needed is only a lost cache entry; fewer would be a
 * stale answer, which tests/unit/test_search_groups.c and tests/fuzz/fuzz_search_groups.c
 * check never happens.
 */
#ifndef TL_SEARCH_GROUPS_H
#define TL_SEARCH_GROUPS_H

#define TL_SEARCH_GROUPS (36 * 37) /* one or two of [0-9a-z] */

typedef struct tl_search_touch {
  unsigned char group[TL_SEARCH_GROUPS]; /* non-zero: touched */
  int all;                               /* every search is touched */
} tl_search_touch;

/* The group of search text q (words as tl_query_search reads them: runs of ASCII letters and
 * digits and non-ASCII bytes), named by its longest word that can name one (the later of
 * equals: the longest is likely the rarest, the group the fewest orders touch); -1 when none
 * can (the search is not to be cached). */
int tl_search_group_of(const char *q);

/* The name of group g: one or two lower-case letters or digits. */
void tl_search_group_name(int g, char out[3]);

/* Marks the groups an order's items touch: items is the order view's "items" as tl_jw writes
 * it (a JSON array of objects, no spaces; a '"' inside a string always escaped), whose "name"
 * members hold the names searches match. Escapes inside a name are decoded (a non-ASCII one
 * touches every search). Text of another shape touches every search. */
void tl_search_touch_items(tl_search_touch *t, const char *items);

#endif
