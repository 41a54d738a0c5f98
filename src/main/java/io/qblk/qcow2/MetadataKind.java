package io.qblk.qcow2;

/** What a metadata cluster holds, for the overlap check. */
enum MetadataKind {
    HEADER("header"), L1("active L1 table"), REFCOUNT_TABLE("refcount table"), REFCOUNT_BLOCK("refcount block"),
    L2("L2 table"), SNAPSHOT_TABLE("snapshot table"), SNAPSHOT_L1("snapshot L1 table"), BITMAPS("bitmap directory"),
    BITMAP_TABLE("bitmap table"), BITMAP_DATA("bitmap data cluster");

    final String label;

    MetadataKind(String label) {
        this.label = label;
    }
}
