package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The internal snapshot table as far as the engine needs it: each snapshot's L1 table (read-only,
 * for the overlap map and check) and the table's size. Parsed with bounds on every field.
 */
record SnapshotTable(long bytes, List<SnapshotL1> l1s) {
    /** One snapshot's L1 table: {@code entries} 8-byte entries at {@code offset}. */
    record SnapshotL1(long offset, long entries) {}

    static final SnapshotTable NONE = new SnapshotTable(0, List.of());

    static SnapshotTable read(IoBackend file, Qcow2Header h) throws IOException {
        if (h.nbSnapshots == 0) return NONE;
        int cs = h.clusterSize();
        List<SnapshotL1> l1s = new ArrayList<>();
        long pos = h.snapshotsOffset;
        for (int i = 0; i < h.nbSnapshots; i++) {
            ByteBuffer b = ByteBuffer.wrap(FileReads.bytes(file, pos, 40)).order(ByteOrder.BIG_ENDIAN);
            long l1off = b.getLong(0);
            long l1n = Integer.toUnsignedLong(b.getInt(8));
            int idLen = b.getShort(12) & 0xffff, nameLen = b.getShort(14) & 0xffff;
            long extra = Integer.toUnsignedLong(b.getInt(36));
            if (extra > 1024) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: entry " + i + " has " + extra + " bytes of extra data");
            if ((l1off & (cs - 1)) != 0 || l1off <= 0 || l1n > Qcow2Header.MAX_L1_ENTRIES || l1off >= Qcow2Header.MAX_HOST_OFFSET)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: entry " + i + " has a bad L1 table (offset " + l1off + ", " + l1n + " entries)");
            l1s.add(new SnapshotL1(l1off, l1n));
            pos += (40 + extra + idLen + nameLen + 7) & ~7L;
            if (pos - h.snapshotsOffset > (64L << 20)) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: larger than 64 MiB");
        }
        return new SnapshotTable(pos - h.snapshotsOffset, List.copyOf(l1s));
    }
}
