package io.qblk.faults;

/**
 * One operation of a workload on the guest disk, with its place on the backend's clock.
 *
 * @param ok        the call returned normally (false: it threw)
 * @param startTick backend clock when the call began; {@code endTick} when it returned
 * @param applied   for SNAPSHOT_APPLY: the decoded tag ({@link SectorTags#decode}) of every guest
 *                  sector of the snapshot it applies, read just before; null for other types
 */
record GuestOp(int id, Type type, long offset, long length, boolean ok, long startTick, long endTick, long[] applied) {
    /**
     * SNAPSHOT creates internal snapshot "s&lt;id&gt;" (it flushes first, so it is also a barrier);
     * SNAPSHOT_DELETE deletes snapshot "s&lt;offset&gt;". Neither touches guest sectors.
     * SNAPSHOT_APPLY reverts the active image to snapshot "s&lt;offset&gt;" ("base" for a negative
     * offset, {@link Workload#snapshotName}): it rewrites every guest sector with the snapshot's
     * value (zero past the snapshot's size), and ends with a flush (a barrier that includes itself).
     */
    enum Type { WRITE, WRITE_ZEROES, ZERO_UNMAP, DISCARD, FLUSH, SNAPSHOT, SNAPSHOT_DELETE, SNAPSHOT_APPLY }

    GuestOp(int id, Type type, long offset, long length, boolean ok, long startTick, long endTick) {
        this(id, type, offset, length, ok, startTick, endTick, null);
    }

    /** A flush, a snapshot create (which flushes everything before it) or apply (which flushes everything, itself included). */
    boolean barrier() {
        return type == Type.FLUSH || type == Type.SNAPSHOT || type == Type.SNAPSHOT_APPLY;
    }

    /** Whether this op's effect is durable once barrier {@code flushId} has completed. */
    boolean durableBy(int flushId) {
        return id < flushId || (id == flushId && type == Type.SNAPSHOT_APPLY);
    }

    boolean snapshotOp() {
        return type == Type.SNAPSHOT || type == Type.SNAPSHOT_DELETE || type == Type.SNAPSHOT_APPLY;
    }

    /** Whether the op changes guest sectors (writes, zeroes, discards, snapshot apply). */
    boolean changesSectors() {
        return type != Type.FLUSH && type != Type.SNAPSHOT && type != Type.SNAPSHOT_DELETE;
    }

    long firstSector() {
        return type == Type.SNAPSHOT_APPLY ? 0 : offset / 512;
    }

    /** One past the last sector the op changes. */
    long endSector() {
        if (type == Type.SNAPSHOT_APPLY) return applied == null ? 0 : applied.length; // null: the snapshot could not be read, nothing applied
        return (offset + length + 511) / 512;
    }

    boolean touches(long sector) {
        return changesSectors() && sector >= firstSector() && sector < endSector();
    }

    /** The value a sector holds after this op: a tag for writes, the snapshot's value for apply, zero otherwise. */
    long valueAt(long sector) {
        return switch (type) {
            case WRITE -> SectorTags.encode(id, sector);
            case SNAPSHOT_APPLY -> applied[(int) sector];
            default -> SectorTags.ZERO;
        };
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
