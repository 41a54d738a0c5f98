package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Reads of header-sized pieces and 8-byte big-endian tables into heap arrays (4 KiB-aligned buffers). */
final class FileReads {
    private FileReads() {}

    static byte[] bytes(IoBackend f, long off, int len) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(Math.max(len, 1), 4096).asSlice(0, len);
            f.read(off, s);
            return s.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    static long[] longs(IoBackend f, long off, int n) throws IOException {
        long[] out = new long[n];
        if (n == 0) return out;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate((long) n * 8, 4096);
            f.read(off, s);
            for (int i = 0; i < n; i++) out[i] = s.get(CachedTable.BE_LONG, i * 8L);
        }
        return out;
    }
}
