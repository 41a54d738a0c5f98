package io.qblk.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PosixFileBackendTest {
    @TempDir
    Path dir;

    @Test
    void writeReadSyncHoleAndEof() throws Exception {
        Path f = dir.resolve("f");
        try (var io = PosixFileBackend.open(f, false, true); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(8192);
            for (int i = 0; i < 8192; i++) buf.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7));
            io.write(4096, buf);
            io.datasync();
            assertEquals(12288, io.size());
            MemorySegment back = a.allocate(8192);
            io.read(4096, back);
            assertArrayEquals(buf.toArray(ValueLayout.JAVA_BYTE), back.toArray(ValueLayout.JAVA_BYTE));
            io.punchHole(4096, 4096);
            io.read(4096, back);
            assertEquals(0, back.get(ValueLayout.JAVA_BYTE, 100));
            assertEquals(buf.get(ValueLayout.JAVA_BYTE, 4096 + 5), back.get(ValueLayout.JAVA_BYTE, 4096 + 5));
            byte[] heap = new byte[100];
            io.read(12288 - 50, MemorySegment.ofArray(heap)); // half past EOF reads zeroes
            assertEquals(0, heap[99]);
            assertEquals(buf.get(ValueLayout.JAVA_BYTE, 8192 - 50), heap[0]);
        }
        assertEquals(12288, Files.size(f));
    }

    @Test
    void missingFileAndReadOnlyWrite() throws Exception {
        assertThrows(NoSuchFileException.class, () -> PosixFileBackend.open(dir.resolve("nope"), true));
        Path f = dir.resolve("ro");
        Files.write(f, new byte[512]);
        try (var io = PosixFileBackend.open(f, true)) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> io.write(0, MemorySegment.ofArray(new byte[512])));
            assertEquals("EBADF", e.errnoName());
        }
    }
}
