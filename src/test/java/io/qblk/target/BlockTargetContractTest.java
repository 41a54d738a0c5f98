package io.qblk.target;

import io.qblk.testing.FaultyBackend;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What every {@link BlockTarget} promises a frontend, run against each implementation by a
 * subclass (netty-style abstract suite): size, read/write, zeroes, discard, flush across a reopen,
 * read-only refusal with EROFS, extents, concurrency, and backend errors keeping their errno.
 * The null target runs it adapted to its semantics ({@link #stores()} false: it keeps nothing).
 */
abstract class BlockTargetContractTest {
    static final long SIZE = 4L << 20;
    static final int BLOCK = 64 << 10;

    @TempDir Path dir;

    /** The format under test; its image of {@link #SIZE} bytes is made by {@link #create}. */
    abstract ImageFormat format();

    /** Creates the image file {@code f} of {@link #SIZE} bytes (not called for the null format). */
    void create(Path f) throws IOException {
        throw new UnsupportedOperationException(format() + " has no file");
    }

    /** The image file, created on the first call. */
    Path file() throws IOException {
        Path f = dir.resolve("disk." + format().id());
        if (!java.nio.file.Files.exists(f)) create(f);
        return f;
    }

    /** The target on the image, opened through {@link TargetOpener} like every frontend opens it. */
    BlockTarget open(boolean readOnly) throws IOException {
        TargetOptions o = TargetOptions.defaults().withFormat(format()).withReadOnly(readOnly).withNullSize(SIZE);
        return TargetOpener.open(format().hasFile() ? file() : null, o);
    }

    /**
     * A writable target whose file's writes fail with the errno set on the returned backend; null
     * for a target without a file.
     */
    abstract Faulty openFaulty() throws IOException;

    record Faulty(BlockTarget target, FaultyBackend backend) {}

    /** Whether written data reads back (false for the null target). */
    boolean stores() { return true; }

    private static MemorySegment filled(Arena a, long len, int b) {
        return a.allocate(len, 4096).fill((byte) b);
    }

    private static void assertAll(MemorySegment s, int b, String what) {
        for (long i = 0; i < s.byteSize(); i++)
            if (s.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) != (byte) b) fail(what + ": byte " + i + " is not " + b);
    }

    @Test
    void sizeIsTheImageSizeInSectors() throws IOException {
        try (BlockTarget t = open(false)) {
            assertEquals(SIZE, t.size());
            assertEquals(0, t.size() % 512);
            assertFalse(t.readOnly());
        }
    }

    @Test
    void unwrittenRangesReadAsZeroesAndWritesReadBack() throws IOException {
        try (BlockTarget t = open(false); Arena a = Arena.ofConfined()) {
            MemorySegment r = filled(a, BLOCK, 0x11);
            t.read(BLOCK, r);
            assertAll(r, 0, "unwritten");
            t.write(BLOCK, filled(a, BLOCK, 0xab), false);
            t.write(SIZE - 512, filled(a, 512, 0xcd), true);
            t.read(BLOCK, r);
            assertAll(r, stores() ? 0xab : 0, "written block");
            MemorySegment last = filled(a, 512, 0);
            t.read(SIZE - 512, last);
            assertAll(last, stores() ? 0xcd : 0, "last sector");
        }
    }

    @Test
    void writeZeroesReadsZeroWithAndWithoutUnmap() throws IOException {
        try (BlockTarget t = open(false); Arena a = Arena.ofConfined()) {
            t.write(0, filled(a, 4 * BLOCK, 0x5a), false);
            t.writeZeroes(0, BLOCK, true);
            t.writeZeroes(2 * BLOCK, BLOCK, false);
            MemorySegment r = filled(a, 4 * BLOCK, 1);
            t.read(0, r);
            assertAll(r.asSlice(0, BLOCK), 0, "zeroed with unmap");
            assertAll(r.asSlice(BLOCK, BLOCK), stores() ? 0x5a : 0, "untouched");
            assertAll(r.asSlice(2 * BLOCK, BLOCK), 0, "zeroed without unmap");
        }
    }

    @Test
    void discardedRangesReadAsZeroOrTheirOldData() throws IOException {
        try (BlockTarget t = open(false); Arena a = Arena.ofConfined()) {
            t.write(0, filled(a, 2 * BLOCK, 0x77), false);
            t.discard(0, BLOCK);
            MemorySegment r = filled(a, 2 * BLOCK, 1);
            t.read(0, r);
            for (long s = 0; s < BLOCK; s += 512) {
                byte first = r.get(java.lang.foreign.ValueLayout.JAVA_BYTE, s);
                assertTrue(first == 0 || (stores() && first == 0x77), "sector " + s + " after discard: " + first);
                assertAll(r.asSlice(s, 512), first, "sector " + s + " is all old or all zero");
            }
            assertAll(r.asSlice(BLOCK, BLOCK), stores() ? 0x77 : 0, "beside the discard");
        }
    }

    @Test
    void flushedWritesSurviveAReopen() throws IOException {
        try (BlockTarget t = open(false); Arena a = Arena.ofConfined()) {
            t.write(3 * BLOCK, filled(a, BLOCK, 0x42), false);
            t.flush();
        }
        try (BlockTarget t = open(true); Arena a = Arena.ofConfined()) {
            MemorySegment r = filled(a, BLOCK, 1);
            t.read(3 * BLOCK, r);
            assertAll(r, stores() ? 0x42 : 0, "after reopen");
        }
    }

    @Test
    void aReadOnlyTargetRefusesChangesWithErofs() throws IOException {
        open(false).close();
        try (BlockTarget t = open(true); Arena a = Arena.ofConfined()) {
            if (!stores()) {
                assertFalse(t.readOnly(), "the null target has no read-only mode: it keeps nothing to protect");
                return;
            }
            assertTrue(t.readOnly());
            List<IOException> refusals = new ArrayList<>();
            refusals.add(assertThrows(IOException.class, () -> t.write(0, filled(a, 512, 1), false)));
            refusals.add(assertThrows(IOException.class, () -> t.writeZeroes(0, 512, true)));
            refusals.add(assertThrows(IOException.class, () -> t.discard(0, 512)));
            for (IOException e : refusals) assertEquals(Errno.EROFS, TargetErrors.toErrno(e), e.toString());
            MemorySegment r = filled(a, 512, 1);
            t.read(0, r);
            assertAll(r, 0, "nothing was written");
            t.flush(); // a flush of a read-only target has nothing to do, and does not fail
        }
    }

    @Test
    void extentsStartAtTheOffsetAndStayInTheRange() throws IOException {
        try (BlockTarget t = open(false); Arena a = Arena.ofConfined()) {
            t.write(BLOCK, filled(a, BLOCK, 3), true);
            for (long[] q : new long[][] {{0, SIZE}, {BLOCK, BLOCK}, {BLOCK + 512, 4096}, {SIZE - 512, 512}}) {
                List<BlockTarget.Extent> ext = t.blockStatus(q[0], q[1]);
                assertFalse(ext.isEmpty());
                long pos = q[0];
                for (BlockTarget.Extent e : ext) {
                    assertEquals(pos, e.offset(), "extents are consecutive from the offset");
                    assertTrue(e.length() > 0);
                    pos += e.length();
                }
                assertTrue(pos <= q[0] + q[1], "extents never pass offset + length");
            }
            if (stores()) {
                BlockTarget.Extent e = t.blockStatus(BLOCK, BLOCK).getFirst();
                assertFalse(e.zero(), "written data is not reported as zeroes");
            }
        }
    }

    @Test
    void concurrentWritersToDisjointRangesAllLand() throws Exception {
        try (BlockTarget t = open(false)) {
            List<Thread> threads = new ArrayList<>();
            List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
            for (int i = 0; i < 16; i++) {
                int n = i;
                threads.add(Thread.ofVirtual().start(() -> {
                    try (Arena a = Arena.ofConfined()) {
                        t.write((long) n * BLOCK, filled(a, BLOCK, n + 1), false);
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }));
            }
            for (Thread th : threads) th.join();
            assertEquals(List.of(), errors);
            t.flush();
            try (Arena a = Arena.ofConfined()) {
                MemorySegment r = filled(a, BLOCK, 0);
                for (int n = 0; n < 16; n++) {
                    t.read((long) n * BLOCK, r);
                    assertAll(r, stores() ? n + 1 : 0, "block " + n);
                }
            }
        }
    }

    @Test
    void backendErrorsKeepTheirErrno() throws IOException {
        Faulty f = openFaulty();
        if (f == null) {
            assertFalse(stores(), "only a target without a file has no backend to fail");
            return;
        }
        try (BlockTarget t = f.target(); Arena a = Arena.ofConfined()) {
            f.backend().fail(Errno.ENOSPC, FaultyBackend.MODIFYING);
            IOException e = assertThrows(IOException.class, () -> {
                t.write(5 * BLOCK, filled(a, BLOCK, 9), false);
                t.flush();
            });
            assertEquals(Errno.ENOSPC, TargetErrors.toErrno(e), "ENOSPC stays ENOSPC: " + e);
            f.backend().heal();
        }
    }
}
