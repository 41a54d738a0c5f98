package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code qemu-img bitmap} operations on an image opened for writing and not written to yet:
 * add, remove, clear, enable, disable (docs/ordering.md, "Editing bitmaps"). Flag changes are
 * in-place writes of one flag word; clearing zeroes the table in place before the data clusters are
 * freed (a torn state keeps extra dirty bits: safe); adding and removing write a new directory (and
 * table) to fresh clusters, then switch the header extension with autoclear bit 0 cleared around the
 * switch (a crash then loses the bitmaps, as with qemu, and leaks their clusters), then free the old ones.
 */
final class BitmapEdits {
    /** What the edit needs from the image. */
    interface Image {
        IoBackend file();
        Qcow2Header header();
        Geometry geometry();
        /** Under the metadata lock: a fresh cluster of kind {@code kind} (refcount raised). */
        long allocate(MetadataKind kind) throws IOException;
        /** Queues clusters to free after the next flush (rule R4). */
        void free(long offset, long clusters) throws IOException;
        void flushFully() throws IOException;
        void writeFeatureBits() throws IOException;
    }

    private BitmapEdits() {}

    static void apply(Image img, BitmapOp op, String name, long granularity) throws IOException {
        Qcow2Header h = img.header();
        Geometry geo = img.geometry();
        int cs = geo.clusterSize;
        IoBackend file = img.file();
        if (h.version < 3) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "persistent bitmaps need a version 3 (compat=1.1) image");
        boolean valid = Bitmaps.valid(h);
        byte[] dir = valid ? FileReads.bytes(file, h.bitmapDirectoryOffset, (int) h.bitmapDirectorySize) : new byte[0];
        List<BitmapDirectory.Entry> entries = valid ? new ArrayList<>(BitmapDirectory.parse(dir, h.nbBitmaps, geo.virtualSize, cs, file.size())) : new ArrayList<>();
        BitmapDirectory.Entry found = null;
        for (BitmapDirectory.Entry e : entries) if (e.name().equals(name)) found = e;
        if (op == BitmapOp.ADD) {
            if (found != null) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "Bitmap already exists: " + name);
            add(img, entries, name, granularity);
            return;
        }
        if (found == null) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "Dirty bitmap '" + name + "' not found");
        switch (op) {
            case ENABLE, DISABLE -> {
                if (found.inUse()) throw inconsistent(name);
                int flags = op == BitmapOp.ENABLE ? found.flags() | BitmapDirectory.FLAG_AUTO : found.flags() & ~BitmapDirectory.FLAG_AUTO;
                writeInt(file, h.bitmapDirectoryOffset + found.pos() + 12, flags);
                file.datasync();
            }
            case CLEAR -> {
                if (found.inUse()) throw inconsistent(name);
                long[] table = FileReads.longs(file, found.tableOffset(), found.tableSize());
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment zeros = a.allocate(Math.max(8, table.length * 8L), 4096);
                    file.write(found.tableOffset(), zeros.asSlice(0, table.length * 8L));
                }
                file.datasync();
                for (long t : table) if ((t & BitmapDirectory.ENTRY_OFFSET_MASK) != 0) img.free(t & BitmapDirectory.ENTRY_OFFSET_MASK, 1);
                img.flushFully();
            }
            case REMOVE -> {
                List<BitmapDirectory.Entry> rest = new ArrayList<>(entries);
                rest.remove(found);
                long[] table = FileReads.longs(file, found.tableOffset(), found.tableSize());
                long oldDir = h.bitmapDirectoryOffset, oldDirSize = h.bitmapDirectorySize;
                switchDirectory(img, rest);
                img.free(found.tableOffset(), clusters(found.tableSize() * 8L, cs));
                for (long t : table) if ((t & BitmapDirectory.ENTRY_OFFSET_MASK) != 0) img.free(t & BitmapDirectory.ENTRY_OFFSET_MASK, 1);
                img.free(oldDir, clusters(oldDirSize, cs));
                img.flushFully();
            }
            default -> throw new IllegalStateException();
        }
    }

    private static void add(Image img, List<BitmapDirectory.Entry> entries, String name, long granularity) throws IOException {
        Qcow2Header h = img.header();
        int cs = img.geometry().clusterSize;
        byte[] nameBytes = name.getBytes(StandardCharsets.UTF_8);
        if (nameBytes.length == 0 || nameBytes.length > BitmapDirectory.MAX_NAME)
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "bitmap name must be 1.." + BitmapDirectory.MAX_NAME + " bytes");
        if (granularity == 0) granularity = Math.min(65536, Math.max(4096, cs));
        int gbits = Long.numberOfTrailingZeros(granularity);
        if (Long.bitCount(granularity) != 1 || gbits < BitmapDirectory.MIN_GRANULARITY_BITS || gbits > BitmapDirectory.MAX_GRANULARITY_BITS)
            throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "Granularity must be power of 2 between 512 and 2147483648");
        if (entries.size() >= 65535) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, "too many bitmaps");
        long bits = (img.geometry().virtualSize + granularity - 1) >>> gbits;
        long tableSize = BitmapDirectory.tableSize(bits, cs);
        if (tableSize * 8 > cs) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "a bitmap table of more than one cluster is not supported (choose a larger granularity)");
        long table = img.allocate(MetadataKind.BITMAP_TABLE);
        try (Arena a = Arena.ofConfined()) {
            img.file().write(table, a.allocate(cs, 4096)); // all entries 0: every bit clean
        }
        List<BitmapDirectory.Entry> next = new ArrayList<>(entries);
        next.add(new BitmapDirectory.Entry(0, table, (int) tableSize, BitmapDirectory.FLAG_AUTO, BitmapDirectory.TYPE_DIRTY_TRACKING, gbits, name, new byte[0]));
        long oldDir = h.bitmapDirectoryOffset, oldDirSize = h.bitmapDirectorySize;
        boolean hadDir = Bitmaps.valid(h);
        switchDirectory(img, next);
        if (hadDir) {
            img.free(oldDir, clusters(oldDirSize, cs));
            img.flushFully();
        }
    }

    /**
     * Writes {@code entries} as a new directory in fresh clusters, makes it and the refcounts durable,
     * then points the header extension at it: autoclear bit 0 cleared (synced), the extension written
     * (synced), the bit set again (synced) when bitmaps remain. Frees nothing: the caller does.
     */
    private static void switchDirectory(Image img, List<BitmapDirectory.Entry> entries) throws IOException {
        Qcow2Header h = img.header();
        IoBackend file = img.file();
        int cs = img.geometry().clusterSize;
        byte[] dir = BitmapDirectory.serialize(entries);
        if (dir.length > cs) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "a bitmap directory of more than one cluster is not supported");
        long dirOff = 0;
        if (!entries.isEmpty()) {
            dirOff = img.allocate(MetadataKind.BITMAPS);
            try (Arena a = Arena.ofConfined()) {
                MemorySegment s = a.allocate(cs, 4096);
                s.copyFrom(MemorySegment.ofArray(dir));
                file.write(dirOff, s);
            }
        }
        img.flushFully();  // refcounts of the new table/directory durable (R2)
        file.datasync();   // their contents too (R3), before the header points at them
        // where the extension goes: in place, or appended at the terminator
        byte[] head = FileReads.bytes(file, 0, cs);
        int at = h.bitmapsExtension;
        if (at < 0) {
            at = h.extensionsEnd - 8;
            long limit = h.backingFileOffset > at ? h.backingFileOffset : cs;
            if (entries.isEmpty()) return;
            if (at + 40 > limit) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "no room for the bitmaps header extension in the first cluster");
            for (int i = at; i < at + 40; i++) if (head[i] != 0) throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "no room for the bitmaps header extension in the first cluster");
        } else if (entries.isEmpty() && at + 32 != h.extensionsEnd - 8) {
            throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "the bitmaps header extension is not the last one: removing it is not supported");
        }
        h.autoclear &= ~BitmapDirectory.AUTOCLEAR_BITMAPS;
        img.writeFeatureBits();
        ByteBuffer ext = ByteBuffer.allocate(40).order(ByteOrder.BIG_ENDIAN);
        if (entries.isEmpty()) {
            ext = ByteBuffer.allocate(8); // the terminator over the extension's header: it is gone
        } else {
            ext.putInt(Qcow2Header.EXT_BITMAPS).putInt(24).putInt(entries.size()).putInt(0).putLong(dir.length).putLong(dirOff);
        }
        // in place: only the data (its length field and what follows stay); else the extension and a new terminator
        int from = h.bitmapsExtension >= 0 && !entries.isEmpty() ? 8 : 0;
        int len = h.bitmapsExtension >= 0 && !entries.isEmpty() ? 24 : ext.capacity();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(len, 8);
            s.copyFrom(MemorySegment.ofArray(ext.array()).asSlice(from, len));
            file.write(at + from, s);
        }
        file.datasync();
        h.bitmapsExtension = entries.isEmpty() ? -1 : at;
        if (h.bitmapsExtension >= 0 && ext.limit() == 40) h.extensionsEnd = at + 40;
        if (entries.isEmpty()) h.extensionsEnd = at + 8;
        h.nbBitmaps = entries.size();
        h.bitmapDirectoryOffset = dirOff;
        h.bitmapDirectorySize = dir.length;
        if (!entries.isEmpty()) {
            h.autoclear |= BitmapDirectory.AUTOCLEAR_BITMAPS;
            img.writeFeatureBits();
        }
    }

    private static long clusters(long bytes, int cs) {
        return Math.max(1, (bytes + cs - 1) / cs);
    }

    private static void writeInt(IoBackend file, long off, int v) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(4, 4);
            s.set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0, v);
            file.write(off, s);
        }
    }

    private static Qcow2Exception inconsistent(String name) {
        return new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "Bitmap '" + name + "' is inconsistent and cannot be used");
    }
}
