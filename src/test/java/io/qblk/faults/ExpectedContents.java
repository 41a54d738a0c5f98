package io.qblk.faults;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * What each guest sector may read after a crash. For a crash in which guest flush {@code F} was the
 * last to complete, a sector must hold exactly the value of the last successful write (or write
 * zeroes, or snapshot apply: that one up to and including F, as it ends with its own flush) to it before F, unless an operation that may or may not have reached the disk also
 * touched it (anything issued after F and before the crash, a failed operation, a discard): then
 * it may hold that operation's value instead. Nothing else is allowed; a wrong read is classified
 * as <em>lost</em> (an older value of the same sector) or <em>foreign</em> (any other data).
 */
final class ExpectedContents {
    private final List<GuestOp> ops;
    private final long sectors;
    /** Ids of the ops touching each sector, ascending; null for untouched sectors. */
    private final int[][] sectorOps;

    /** Sectors no op touched read the backing file's tags ({@link Workload#BACKING_ID}) instead of zeroes. */
    private final boolean backed;

    /** What each sector held before the first op (a base image with data), or null: zeroes or the backing tags. */
    private final long[] initial;

    ExpectedContents(List<GuestOp> ops, long virtualSize, boolean backed) {
        this(ops, virtualSize, backed, null);
    }

    ExpectedContents(List<GuestOp> ops, long virtualSize, boolean backed, long[] initial) {
        this.ops = ops;
        this.backed = backed;
        this.initial = initial;
        this.sectors = virtualSize / 512;
        int[] count = new int[(int) sectors];
        for (GuestOp op : ops) if (op.changesSectors()) for (long s = op.firstSector(); s < op.endSector(); s++) count[(int) s]++;
        sectorOps = new int[(int) sectors][];
        for (int s = 0; s < sectors; s++) if (count[s] > 0) sectorOps[s] = new int[count[s]];
        int[] fill = new int[(int) sectors];
        for (GuestOp op : ops) if (op.changesSectors()) for (long s = op.firstSector(); s < op.endSector(); s++) sectorOps[(int) s][fill[(int) s]++] = op.id();
    }

    /** The last guest flush that had returned successfully by {@code crashTick} (-1: none). */
    int lastReturnedFlush(long crashTick) {
        int f = -1;
        for (GuestOp op : ops)
            if (op.barrier() && op.ok() && op.endTick() <= crashTick) f = op.id();
        return f;
    }

    /** Expectation for a crash at {@code crashTick} after flush {@code flushId} (-1: none) completed. */
    Expectation at(int flushId, long crashTick) {
        long[] required = new long[(int) sectors];
        long[][] extras = new long[(int) sectors][];
        for (int s = 0; s < sectors; s++) {
            int[] l = sectorOps[s];
            long initial = this.initial != null ? this.initial[s] : backed ? SectorTags.encode(Workload.BACKING_ID, s) : SectorTags.ZERO;
            required[s] = initial;
            if (l == null) continue;
            int req = -1;
            long value = initial;
            for (int j : l) {
                GuestOp op = ops.get(j);
                if (op.durableBy(flushId) && !op.optional()) {
                    req = j;
                    value = op.valueAt(s);
                }
            }
            required[s] = value;
            long[] ex = new long[l.length];
            int n = 0;
            for (int j : l) {
                GuestOp op = ops.get(j);
                if ((j > req && op.durableBy(flushId) && op.optional()) || (j > flushId && op.startTick() < crashTick)) ex[n++] = op.valueAt(s);
            }
            if (n > 0) extras[s] = java.util.Arrays.copyOf(ex, n);
        }
        return new Expectation(required, extras, flushId);
    }

    /** Per-sector required value and alternatives. */
    final class Expectation {
        final long[] required;
        final long[][] extras;
        final int flushId;

        Expectation(long[] required, long[][] extras, int flushId) {
            this.required = required;
            this.extras = extras;
            this.flushId = flushId;
        }

        /** Checks {@code disk} (the whole guest disk as read); returns null if every sector is allowed. */
        Verdict verify(MemorySegment disk) {
            return verify(disk, sectors);
        }

        /** Checks the first {@code limit} sectors of {@code disk} (a guest disk smaller than the largest size the ops saw). */
        Verdict verify(MemorySegment disk, long limit) {
            long lost = 0, foreign = 0;
            String first = null;
            for (int s = 0; s < Math.min(limit, sectors); s++) {
                long v = SectorTags.decode(disk, (long) s * 512);
                if (v == required[s]) continue;
                long[] ex = extras[s];
                boolean ok = false;
                if (ex != null) for (long e : ex) if (e == v) { ok = true; break; }
                if (ok) continue;
                boolean isLost = false;
                if (v == SectorTags.ZERO) isLost = true;
                else if (v != SectorTags.GARBAGE && SectorTags.sectorOf(v) == s) {
                    int id = SectorTags.writeIdOf(v);
                    isLost = id < ops.size() && id < flushId && ops.get(id).touches(s);
                }
                if (isLost) lost++;
                else foreign++;
                if (first == null) first = "sector " + s + " (guest offset " + (long) s * 512 + ") reads " + describe(v)
                        + " but must read " + describe(required[s]) + (ex == null ? "" : " or one of " + ex.length + " in-flight values")
                        + (isLost ? " [lost]" : " [foreign]");
            }
            return lost == 0 && foreign == 0 ? null : new Verdict(lost, foreign, first);
        }

        private String describe(long v) {
            if (v == SectorTags.ZERO) return "zeroes";
            if (v == SectorTags.GARBAGE) return "untagged data";
            int id = SectorTags.writeIdOf(v);
            return "write " + (id < ops.size() ? ops.get(id) : "#" + id) + " sector " + SectorTags.sectorOf(v);
        }
    }

    record Verdict(long lostSectors, long foreignSectors, String first) {}
}
