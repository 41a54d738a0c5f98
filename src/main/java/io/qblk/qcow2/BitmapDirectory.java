package io.qblk.qcow2;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The persistent dirty bitmap directory (format type, no I/O): the entries the bitmaps header
 * extension points to, their bitmap tables' entry layout, and the checks qemu applies to them.
 *
 * <pre>
 * directory entry (big endian, padded to a multiple of 8):
 *   0 bitmap_table_offset u64   8 bitmap_table_size u32 (entries)   12 flags u32
 *  16 type u8 (1 = dirty tracking)   17 granularity_bits u8   18 name_size u16   20 extra_data_size u32
 *  24 extra data, then the name (UTF-8, no terminator)
 * flags: bit 0 in_use (inconsistent), bit 1 auto (enabled: tracks writes), bit 2 extra_data_compatible
 * bitmap table entry: bits 9-55 host offset of a data cluster; 0 = no cluster, then bit 0 says
 *   whether the cluster's bits are all ones (1) or all zeros (0); other bits reserved
 * data: bit k of the bitmap (byte k/8, bit k%8, least significant first) covers guest bytes
 *   [k * granularity, (k+1) * granularity)
 * </pre>
 */
final class BitmapDirectory {
    static final int FLAG_IN_USE = 1, FLAG_AUTO = 2, FLAG_EXTRA_DATA_COMPATIBLE = 4;
    static final int KNOWN_FLAGS = FLAG_IN_USE | FLAG_AUTO | FLAG_EXTRA_DATA_COMPATIBLE;
    static final int TYPE_DIRTY_TRACKING = 1;
    static final int MIN_GRANULARITY_BITS = 9, MAX_GRANULARITY_BITS = 31;
    static final int MAX_NAME = 1023;
    static final long ENTRY_OFFSET_MASK = 0x00fffffffffffe00L;
    static final long ENTRY_ALL_ONES = 1L;
    static final long ENTRY_RESERVED = ~(ENTRY_OFFSET_MASK | ENTRY_ALL_ONES);
    /** Autoclear feature bit 0: the bitmaps extension is valid. */
    static final long AUTOCLEAR_BITMAPS = 1L;

    /** One bitmap; {@code pos} is where its entry starts in the directory (its flags are at pos + 12). */
    record Entry(int pos, long tableOffset, int tableSize, int flags, int type, int granularityBits, String name, byte[] extraData) {
        boolean inUse() { return (flags & FLAG_IN_USE) != 0; }

        boolean auto() { return (flags & FLAG_AUTO) != 0; }

        long granularity() { return 1L << granularityBits; }

        /** Bits of the bitmap for an image of {@code virtualSize} bytes. */
        long bits(long virtualSize) { return (virtualSize + granularity() - 1) >>> granularityBits; }

        int bytes() { return 24 + extraData.length + name.getBytes(StandardCharsets.UTF_8).length; }

        int paddedBytes() { return (bytes() + 7) & ~7; }
    }

    private BitmapDirectory() {}

    /** Entries of a bitmap table for {@code bits} bits with clusters of {@code clusterSize} bytes. */
    static long tableSize(long bits, int clusterSize) {
        long bytes = (bits + 7) >>> 3;
        return (bytes + clusterSize - 1) / clusterSize;
    }

    /**
     * Parses and checks {@code count} entries of {@code dir} for an image of {@code virtualSize}
     * bytes in {@code fileSize} bytes of file: a malformed entry is a {@link Qcow2Exception} of kind
     * CORRUPT naming the bitmap and the field, as qemu refuses such a directory.
     */
    static List<Entry> parse(byte[] dir, int count, long virtualSize, int clusterSize, long fileSize) throws Qcow2Exception {
        ByteBuffer b = ByteBuffer.wrap(dir).order(ByteOrder.BIG_ENDIAN);
        List<Entry> out = new ArrayList<>();
        int pos = 0;
        for (int i = 0; i < count; i++) {
            if (pos + 24 > dir.length) throw corrupt("bitmap directory entry " + i + " runs past the directory (" + dir.length + " bytes)");
            long tableOffset = b.getLong(pos);
            long tableSize = Integer.toUnsignedLong(b.getInt(pos + 8));
            int flags = b.getInt(pos + 12);
            int type = b.get(pos + 16) & 0xff;
            int gbits = b.get(pos + 17) & 0xff;
            int nameSize = b.getShort(pos + 18) & 0xffff;
            long extra = Integer.toUnsignedLong(b.getInt(pos + 20));
            if (nameSize == 0 || nameSize > MAX_NAME) throw corrupt("bitmap directory entry " + i + " has a bad name size " + nameSize);
            if (extra > dir.length || pos + 24 + extra + nameSize > dir.length)
                throw corrupt("bitmap directory entry " + i + " runs past the directory (" + dir.length + " bytes)");
            byte[] extraData = new byte[(int) extra];
            b.get(pos + 24, extraData);
            byte[] nameBytes = new byte[nameSize];
            b.get(pos + 24 + (int) extra, nameBytes);
            String name = new String(nameBytes, StandardCharsets.UTF_8);
            String what = "bitmap '" + name + "'";
            if ((flags & ~KNOWN_FLAGS) != 0) throw corrupt(what + " has unknown flags 0x" + Integer.toHexString(flags));
            if (type != TYPE_DIRTY_TRACKING) throw corrupt(what + " has unknown type " + type);
            if (gbits < MIN_GRANULARITY_BITS || gbits > MAX_GRANULARITY_BITS) throw corrupt(what + " has granularity bits " + gbits + " (9..31 allowed)");
            if (extra != 0 && (flags & FLAG_EXTRA_DATA_COMPATIBLE) == 0) throw corrupt(what + " has extra data this program does not know");
            Entry e = new Entry(pos, tableOffset, (int) tableSize, flags, type, gbits, name, extraData);
            if (tableSize != tableSize(e.bits(virtualSize), clusterSize))
                throw corrupt(what + " has a bitmap table of " + tableSize + " entries, expected " + tableSize(e.bits(virtualSize), clusterSize));
            if (tableOffset == 0 || tableOffset % clusterSize != 0 || tableOffset >= fileSize || tableSize * 8 > fileSize - tableOffset)
                throw corrupt(what + " has its bitmap table at a bad offset " + tableOffset);
            for (Entry o : out) if (o.name.equals(name)) throw corrupt("two bitmaps are named '" + name + "'");
            out.add(e);
            pos += e.paddedBytes();
        }
        return out;
    }

    /** Checks a bitmap table entry of {@code bitmap}: a data cluster inside the file, no reserved bits. */
    static void checkTableEntry(Entry bitmap, int index, long entry, int clusterSize, long fileSize) throws Qcow2Exception {
        String what = "bitmap '" + bitmap.name + "' table entry " + index;
        if ((entry & ENTRY_RESERVED) != 0) throw corrupt(what + " has reserved bits set (0x" + Long.toHexString(entry) + ")");
        long off = entry & ENTRY_OFFSET_MASK;
        if (off == 0) return;
        if ((entry & ENTRY_ALL_ONES) != 0) throw corrupt(what + " has a data cluster and the all-ones flag");
        if (off % clusterSize != 0 || off >= fileSize) throw corrupt(what + " points to a bad data cluster offset " + off);
    }

    /** Serializes {@code entries} (positions are recomputed by the next parse). */
    static byte[] serialize(List<Entry> entries) {
        int size = 0;
        for (Entry e : entries) size += e.paddedBytes();
        ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.BIG_ENDIAN);
        for (Entry e : entries) {
            int start = b.position();
            byte[] name = e.name.getBytes(StandardCharsets.UTF_8);
            b.putLong(e.tableOffset).putInt(e.tableSize).putInt(e.flags).put((byte) e.type).put((byte) e.granularityBits)
                    .putShort((short) name.length).putInt(e.extraData.length).put(e.extraData).put(name);
            b.position(start + e.paddedBytes());
        }
        return b.array();
    }

    private static Qcow2Exception corrupt(String msg) {
        return new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt bitmap directory: " + msg);
    }
}
