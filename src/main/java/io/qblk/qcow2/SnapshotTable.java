package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The internal snapshot table (qcow2 spec, "Snapshots"): format type only, no I/O beyond reading
 * it. Each entry keeps its extra data as read, so a rewritten table (snapshot create/delete)
 * carries fields we do not interpret unchanged. Parsed with bounds on every field.
 *
 * <pre>
 *  0 l1_table_offset u64   8 l1_size u32   12 id_str_size u16   14 name_size u16
 * 16 date_sec u32   20 date_nsec u32   24 vm_clock_nsec u64   32 vm_state_size u32
 * 36 extra_data_size u32   40 extra data (vm_state_size_large u64, disk_size u64, icount u64)
 *    then id string, name string, padding to a multiple of 8
 * </pre>
 */
record SnapshotTable(long bytes, List<Entry> entries) {
    /** One snapshot's L1 table: {@code entries} 8-byte entries at {@code offset}. */
    record SnapshotL1(long offset, long entries) {}

    /** One snapshot. {@code extra} is the extra data as stored (or as we write it for a new one). */
    record Entry(long l1Offset, long l1Entries, String id, String name, long dateSec, long dateNsec, long vmClockNsec,
            long vmStateSize32, byte[] extra) {
        long vmStateSize() {
            return extra.length >= 8 ? ByteBuffer.wrap(extra).getLong(0) : vmStateSize32;
        }

        /** The virtual disk size when the snapshot was taken, or -1 when the entry does not record it. */
        long diskSize() {
            return extra.length >= 16 ? ByteBuffer.wrap(extra).getLong(8) : -1;
        }

        /** Instruction count, -1 when not recorded. */
        long icount() {
            return extra.length >= 24 ? ByteBuffer.wrap(extra).getLong(16) : -1;
        }

        SnapshotInfo info() {
            return new SnapshotInfo(id, name, dateSec, dateNsec, vmClockNsec, vmStateSize(), icount());
        }

        int size() {
            byte[] i = id.getBytes(StandardCharsets.UTF_8), n = name.getBytes(StandardCharsets.UTF_8);
            return (40 + extra.length + i.length + n.length + 7) & ~7;
        }
    }

    static final SnapshotTable NONE = new SnapshotTable(0, List.of());

    /** Most snapshots a table may hold (qemu's limit). */
    static final int MAX_SNAPSHOTS = 65536;

    List<SnapshotL1> l1s() {
        return entries.stream().map(e -> new SnapshotL1(e.l1Offset(), e.l1Entries())).toList();
    }

    /** The snapshot whose ID is {@code key}, else the first whose name is {@code key}, else null (qemu's lookup order). */
    Entry find(String key) {
        for (Entry e : entries) if (e.id().equals(key)) return e;
        for (Entry e : entries) if (e.name().equals(key)) return e;
        return null;
    }

    /** The first snapshot named {@code name}, else null (qemu-img snapshot -d looks up names only). */
    Entry findByName(String name) {
        for (Entry e : entries) if (e.name().equals(name)) return e;
        return null;
    }

    /** The next free numeric ID: one more than the highest numeric ID in use. */
    String nextId() {
        long max = 0;
        for (Entry e : entries) {
            try {
                max = Math.max(max, Long.parseLong(e.id()));
            } catch (NumberFormatException ignored) {
                // a non-numeric ID takes no number
            }
        }
        return Long.toString(max + 1);
    }

    SnapshotTable with(Entry e) {
        List<Entry> l = new ArrayList<>(entries);
        l.add(e);
        return new SnapshotTable(l.stream().mapToLong(Entry::size).sum(), List.copyOf(l));
    }

    SnapshotTable without(Entry e) {
        List<Entry> l = new ArrayList<>(entries);
        l.remove(e);
        return new SnapshotTable(l.stream().mapToLong(Entry::size).sum(), List.copyOf(l));
    }

    /** The table's on-disk bytes. */
    byte[] serialize() {
        ByteBuffer b = ByteBuffer.allocate((int) bytes).order(ByteOrder.BIG_ENDIAN);
        for (Entry e : entries) {
            int start = b.position();
            byte[] id = e.id().getBytes(StandardCharsets.UTF_8), name = e.name().getBytes(StandardCharsets.UTF_8);
            b.putLong(e.l1Offset()).putInt((int) e.l1Entries()).putShort((short) id.length).putShort((short) name.length)
                    .putInt((int) e.dateSec()).putInt((int) e.dateNsec()).putLong(e.vmClockNsec()).putInt((int) e.vmStateSize32())
                    .putInt(e.extra().length).put(e.extra()).put(id).put(name);
            b.position(start + e.size());
        }
        return b.array();
    }

    static SnapshotTable read(IoBackend file, Qcow2Header h) throws IOException {
        if (h.nbSnapshots == 0) return NONE;
        if (h.nbSnapshots < 0 || h.nbSnapshots > MAX_SNAPSHOTS)
            throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: " + Integer.toUnsignedString(h.nbSnapshots) + " snapshots");
        int cs = h.clusterSize();
        List<Entry> list = new ArrayList<>();
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
            byte[] rest = FileReads.bytes(file, pos + 40, (int) extra + idLen + nameLen);
            byte[] ex = java.util.Arrays.copyOfRange(rest, 0, (int) extra);
            String id = new String(rest, (int) extra, idLen, StandardCharsets.UTF_8);
            String name = new String(rest, (int) extra + idLen, nameLen, StandardCharsets.UTF_8);
            list.add(new Entry(l1off, l1n, id, name, Integer.toUnsignedLong(b.getInt(16)), Integer.toUnsignedLong(b.getInt(20)),
                    b.getLong(24), Integer.toUnsignedLong(b.getInt(32)), ex));
            pos += (40 + extra + idLen + nameLen + 7) & ~7L;
            if (pos - h.snapshotsOffset > (64L << 20)) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt snapshot table: larger than 64 MiB");
        }
        return new SnapshotTable(pos - h.snapshotsOffset, List.copyOf(list));
    }
}
