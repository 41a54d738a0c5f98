package io.qblk.io;

import io.qblk.uring.FileBackends;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.api.Test;

/**
 * Cache mode none: aligned requests on the O_DIRECT descriptor, the rest buffered, and the two views
 * of the file agreeing. Runs in the JUnit temporary directory; where that file system refuses
 * O_DIRECT the tests check the stated fallback instead (and print why).
 */
class DirectIoBackendTest {
    @TempDir
    Path dir;

    /** Whether this file system accepts O_DIRECT, asked with a plain open(2). */
    static boolean directSupported(Path f) {
        int fd = LibC.open(f.toString(), LibC.O_RDWR | LibC.O_CLOEXEC | LibC.O_DIRECT, 0);
        if (fd < 0) {
            System.out.println("DirectIoBackendTest: " + f.getParent() + " refuses O_DIRECT (errno " + LibC.errno() + "); testing the fallback");
            return false;
        }
        LibC.close(fd);
        return true;
    }

    static MemorySegment pattern(Arena a, long len, int seed) {
        MemorySegment s = a.allocate(len, 4096);
        for (long i = 0; i < len; i++) s.set(ValueLayout.JAVA_BYTE, i, (byte) (seed * 31 + i * 7 + (i >>> 9)));
        return s;
    }

    static byte[] bytes(MemorySegment s) {
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    @ParameterizedTest
    @EnumSource(AioMode.class)
    void alignedRequestsGoDirectOthersBufferedAndBothViewsAgree(AioMode aio) throws Exception {
        Path f = dir.resolve("f-" + aio);
        Files.write(f, new byte[0]);
        boolean direct = directSupported(f);
        try (IoBackend io = FileBackends.open(f, false, CacheMode.NONE, aio); Arena a = Arena.ofConfined()) {
            DirectIoBackend d = assertInstanceOf(DirectIoBackend.class, io);
            if (direct) assertNull(d.directDisabledReason());
            else assertNotNull(d.directDisabledReason());

            // Aligned write (direct), then an unaligned buffered read of part of it.
            MemorySegment p1 = pattern(a, 16384, 1);
            io.write(8192, p1);
            MemorySegment part = a.allocate(1000, 8);
            io.read(8192 + 700, part);
            assertArrayEquals(bytes(p1.asSlice(700, 1000)), bytes(part));
            assertEquals(direct ? 1 : 0, d.directOps());

            // Buffered unaligned write into the middle, then an aligned direct read must see it
            // (the kernel writes the dirty page back before the direct read).
            MemorySegment small = pattern(a, 512, 2);
            io.write(8192 + 4096 + 512, small);
            MemorySegment back = a.allocate(16384, 4096);
            io.read(8192, back);
            byte[] want = bytes(p1);
            System.arraycopy(bytes(small), 0, want, 4096 + 512, 512);
            assertArrayEquals(want, bytes(back));
            assertEquals(direct ? 2 : 0, d.directOps());

            // Page cache holds the range now (buffered read); a direct overwrite must not leave it stale.
            MemorySegment cached = a.allocate(4096 + 100, 1);
            io.read(8192 + 1, cached.asSlice(0, 4096 + 100)); // unaligned: buffered, fills the cache
            MemorySegment p2 = pattern(a, 16384, 3);
            io.write(8192, p2);
            MemorySegment again = a.allocate(3000, 1);
            io.read(8192 + 5, again); // buffered
            assertArrayEquals(bytes(p2.asSlice(5, 3000)), bytes(again));

            // Heap segments and unaligned addresses are served buffered.
            long before = d.directOps();
            byte[] heap = new byte[4096];
            io.read(8192, MemorySegment.ofArray(heap));
            assertArrayEquals(bytes(p2.asSlice(0, 4096)), heap);
            MemorySegment odd = a.allocate(4096 + 512, 4096).asSlice(512, 4096);
            io.read(8192, odd);
            assertArrayEquals(bytes(p2.asSlice(0, 4096)), bytes(odd));
            assertEquals(before, d.directOps());
            assertTrue(d.bufferedOps() >= 5, "buffered requests: " + d.bufferedOps());

            io.datasync();
            assertEquals(8192 + 16384, io.size());
        }
        // The file holds what was written, seen by an independent reader.
        byte[] onDisk = Files.readAllBytes(f);
        assertEquals(8192 + 16384, onDisk.length);
    }

    @ParameterizedTest
    @EnumSource(AioMode.class)
    void directReadAcrossAnUnalignedEndOfFileReturnsBytesThenZeroes(AioMode aio) throws Exception {
        Path f = dir.resolve("eof-" + aio);
        byte[] content = new byte[6000];
        for (int i = 0; i < content.length; i++) content[i] = (byte) (i * 13 + 1);
        Files.write(f, content);
        try (IoBackend io = FileBackends.open(f, true, CacheMode.NONE, aio); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(8192, 4096);
            buf.fill((byte) 0x55);
            io.read(0, buf); // a short direct read, then the unaligned rest: retried buffered
            byte[] got = bytes(buf);
            for (int i = 0; i < 6000; i++) assertEquals(content[i], got[i], "byte " + i);
            for (int i = 6000; i < 8192; i++) assertEquals(0, got[i], "byte " + i + " past EOF");
            assertThrows(java.io.IOException.class, () -> io.write(0, buf), "read-only file");
        }
    }

    @ParameterizedTest
    @EnumSource(CacheMode.class)
    void zeroRangeZeroesAndGrows(CacheMode cache) throws Exception {
        Path f = dir.resolve("z-" + cache);
        Files.write(f, new byte[0]);
        try (IoBackend io = FileBackends.open(f, false, cache, AioMode.POSIX); Arena a = Arena.ofConfined()) {
            MemorySegment p = pattern(a, 65536, 4);
            io.write(0, p);
            io.zeroRange(4096, 8192 + 512);
            MemorySegment back = a.allocate(65536, 4096);
            io.read(0, back);
            byte[] want = bytes(p);
            java.util.Arrays.fill(want, 4096, 4096 + 8192 + 512, (byte) 0);
            assertArrayEquals(want, bytes(back));
            io.zeroRange(65536 + 4096, 65536); // past the end: the file grows, the gap reads zero
            assertEquals(65536 + 4096 + 65536, io.size());
            MemorySegment tail = a.allocate(65536 + 4096, 4096);
            tail.fill((byte) 7);
            io.read(65536, tail);
            for (long i = 0; i < tail.byteSize(); i++) assertEquals(0, tail.get(ValueLayout.JAVA_BYTE, i));
        }
    }

    @Test
    void parsesQemuNames() {
        assertEquals(CacheMode.NONE, CacheMode.parse("none"));
        assertEquals(CacheMode.WRITEBACK, CacheMode.parse("WriteBack"));
        assertEquals(AioMode.POSIX, AioMode.parse("threads"));
        assertEquals(AioMode.IO_URING, AioMode.parse("io_uring"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CacheMode.parse("directsync"));
        assertTrue(e.getMessage().contains("none or writeback"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> AioMode.parse("native"));
    }
}
