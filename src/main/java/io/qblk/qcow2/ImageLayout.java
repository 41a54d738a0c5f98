package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The initial layout of a new image, like qemu-img's:
 *
 * <pre>
 * cluster 0          header (+ feature name table)
 * cluster 1..        refcount table (rtc clusters)
 * then               refcount blocks (rbc clusters) covering every cluster below
 * then               L1 table (zeroes; none for an empty image)
 * </pre>
 */
final class ImageLayout {
    private ImageLayout() {}

    static void writeNew(IoBackend file, CreateOptions o) throws IOException {
        int cs = o.clusterSize();
        int bits = Integer.numberOfTrailingZeros(cs);
        long size = (o.size() + 511) / 512 * 512;
        long l2Entries = cs / (o.extendedL2() ? 16 : 8);
        long bytesPerL1 = (long) cs * l2Entries;
        long l1Size = (size + bytesPerL1 - 1) / bytesPerL1;
        long l1c = (l1Size * 8 + cs - 1) / cs; // an empty image has no L1 table (offset 0), like qemu's
        long rbEntries = (long) cs * 8 / o.refcountBits();
        long rtc = 1, rbc = 1;
        while (true) {
            long total = 1 + rtc + rbc + l1c;
            long needRb = (total + rbEntries - 1) / rbEntries;
            long needRt = (needRb * 8 + cs - 1) / cs;
            if (needRb == rbc && needRt == rtc) break;
            rbc = needRb;
            rtc = needRt;
        }
        long total = 1 + rtc + rbc + l1c;
        long rtOff = (long) cs, rbOff = (1 + rtc) * cs, l1Off = l1Size == 0 ? 0 : (1 + rtc + rbc) * cs;

        Qcow2Header h = new Qcow2Header();
        h.version = o.version();
        h.clusterBits = bits;
        h.size = size;
        h.l1Size = (int) l1Size;
        h.l1TableOffset = l1Off;
        h.refcountTableOffset = rtOff;
        h.refcountTableClusters = (int) rtc;
        h.refcountOrder = Integer.numberOfTrailingZeros(o.refcountBits());
        h.incompatible = o.extendedL2() ? Qcow2Header.INCOMPAT_EXTL2 : 0;
        h.compatible = o.lazyRefcounts() ? Qcow2Header.COMPAT_LAZY_REFCOUNTS : 0;
        h.compression = o.compression();
        if (o.compression() != CompressionType.ZLIB) h.incompatible |= Qcow2Header.INCOMPAT_COMPRESSION;
        h.backingFile = o.backingFile();
        h.backingFormat = o.backingFormat();
        byte[] header = h.serializeNew(cs);

        try (Arena a = Arena.ofConfined()) {
            MemorySegment hs = a.allocate(cs, 4096);
            hs.copyFrom(MemorySegment.ofArray(header));
            file.write(0, hs);

            MemorySegment rt = a.allocate(rtc * cs, 4096);
            for (long i = 0; i < rbc; i++) rt.set(CachedTable.BE_LONG, i * 8, rbOff + i * cs);
            file.write(rtOff, rt);

            CachedTable[] blocks = new CachedTable[(int) rbc];
            for (int i = 0; i < rbc; i++) blocks[i] = CachedTable.refblock(rbOff + (long) i * cs, null, cs);
            int order = h.refcountOrder;
            for (long c = 0; c < total; c++) blocks[(int) (c / rbEntries)].setRefcount((int) (c % rbEntries), order, 1);
            MemorySegment rb = a.allocate(cs, 4096);
            for (int i = 0; i < rbc; i++) {
                blocks[i].serialize(rb);
                file.write(rbOff + (long) i * cs, rb);
            }
            // The L1 table: zeroes; write it so the file covers it.
            if (l1Size > 0) {
                MemorySegment l1 = a.allocate(l1c * cs, 4096);
                file.write(l1Off, l1.asSlice(0, l1Size * 8));
            }
            file.datasync();
        }
    }
}
