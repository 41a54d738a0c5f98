package io.qblk.qcow2;

/** What {@link Qcow2Image#check} may fix (qemu-img check -r). */
public enum RepairMode {
    /** Report only. */
    NONE,
    /** Lower refcounts that are too high (leaked clusters). */
    LEAKS,
    /** Also raise refcounts that are too low, and clear the dirty state. */
    ALL
}
