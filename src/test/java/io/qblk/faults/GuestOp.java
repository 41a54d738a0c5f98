package io.qblk.faults;

/**
 * One operation of a workload on the guest disk, with its place on the backend's clock.
 *
 * @param ok        the call returned normally (false: it threw)
 * @param startTick backend clock when the call began; {@code endTick} when it returned
 */
record GuestOp(int id, Type type, long offset, long length, boolean ok, long startTick, long endTick) {
    /**
     * SNAPSHOT creates internal snapshot "s&lt;id&gt;" (it flushes first, so it is also a barrier);
     * SNAPSHOT_DELETE deletes snapshot "s&lt;offset&gt;". Neither touches guest sectors.
     */
    enum Type { WRITE, WRITE_ZEROES, ZERO_UNMAP, DISCARD, FLUSH, SNAPSHOT, SNAPSHOT_DELETE }

    /** A flush or a snapshot create (which flushes everything before it). */
    boolean barrier() {
        return type == Type.FLUSH || type == Type.SNAPSHOT;
    }

    boolean snapshotOp() {
        return type == Type.SNAPSHOT || type == Type.SNAPSHOT_DELETE;
    }

    boolean touches(long sector) {
        return type != Type.FLUSH && !snapshotOp() && sector >= offset / 512 && sector < (offset + length + 511) / 512;
    }

    /** The value a sector holds after this op: a tag for writes, zero otherwise. */
    long valueAt(long sector) {
        return type == Type.WRITE ? SectorTags.encode(id, sector) : SectorTags.ZERO;
    }

    /** Ops whose effect on a sector is optional even once flushed (discard may keep the old data). */
    boolean optional() {
        return !ok || type == Type.DISCARD;
    }

    @Override
    public String toString() {
        return "#" + id + " " + type + " " + offset + "+" + length + (ok ? "" : " (failed)");
    }
}
