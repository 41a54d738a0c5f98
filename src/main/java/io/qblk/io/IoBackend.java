package io.qblk.io;

import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Positional I/O on one file: the only way the qcow2 engine and the raw target touch storage.
 *
 * <p>Implementations: {@link PosixFileBackend} (pread/pwrite through FFM), the io_uring backend
 * of a ublk queue, and the recording/failing wrappers of the fault-injection suite.
 *
 * <p>Every method may be called concurrently from many (virtual) threads. A call returns only when
 * the operation has completed; errors come back as {@link IOException} (usually {@link ErrnoException}).
 */
public interface IoBackend extends Closeable {

    /** Fills {@code dst} from {@code offset}; bytes past end of file read as zeroes. */
    void read(long offset, MemorySegment dst) throws IOException;

    /** Writes all of {@code src} at {@code offset}, growing the file if needed. */
    void write(long offset, MemorySegment src) throws IOException;

    /** One write of a batch ({@link #writeAll}): all of {@code src} at {@code offset}. */
    record Write(long offset, MemorySegment src) {}

    /**
     * Writes every item of {@code writes} and returns when all have completed: the writes of one
     * batch are independent (no two overlap) and may be issued together and land in any order, like
     * writes issued concurrently; nothing about their order may be relied on before the next
     * {@link #datasync}. On failure the first error is thrown, with its kind (errno), only after no
     * write of the batch is in flight any more; the others may or may not have landed. This default
     * writes them one at a time; the io_uring backend submits them in one {@code io_uring_enter}.
     */
    default void writeAll(java.util.List<Write> writes) throws IOException {
        for (Write w : writes) write(w.offset(), w.src());
    }

    /** Makes every completed write durable (fdatasync semantics). */
    void datasync() throws IOException;

    /** Current file length in bytes. */
    long size() throws IOException;

    /** Sets the file length (grows with a hole or shrinks). */
    void truncate(long length) throws IOException;

    /** Reserves blocks for the range without changing its contents (fallocate mode 0 with KEEP_SIZE off). */
    void allocate(long offset, long length) throws IOException;

    /** Deallocates the range; it reads back as zeroes. File length is unchanged. */
    void punchHole(long offset, long length) throws IOException;

    /**
     * Makes the range read as zeroes, growing the file when the range ends past its end. Like a
     * write, durable only after the next {@link #datasync}. This default writes zeroes; file
     * backends use fallocate(FALLOC_FL_ZERO_RANGE), which costs no data I/O.
     */
    default void zeroRange(long offset, long length) throws IOException {
        writeZeroBytes(offset, length);
    }

    /** Writes {@code length} zero bytes at {@code offset}, a MiB at a time (the fallback of zeroRange and punchHole). */
    default void writeZeroBytes(long offset, long length) throws IOException {
        if (length == 0) return;
        try (Arena a = Arena.ofConfined()) {
            long chunk = Math.min(length, 1 << 20);
            MemorySegment z = a.allocate(chunk, 4096);
            for (long o = 0; o < length; o += chunk) write(offset + o, z.asSlice(0, Math.min(chunk, length - o)));
        }
    }

    /**
     * Null when aligned requests bypass the page cache (O_DIRECT) or that was never asked for;
     * otherwise why every request is buffered ({@link DirectIoBackend}).
     */
    default String directDisabledReason() {
        return null;
    }

    /**
     * The descriptor that {@link #read}{@code (offset, buf)} or {@link #write}{@code (offset, buf)} would
     * use for one plain read or write of the same bytes at the same offset, for a caller that submits
     * that I/O itself ({@link FilePlan}); -1 when this backend transfers them some other way (or
     * transforms the data): then call {@link #read} or {@link #write}.
     */
    default int plainFd(long offset, java.lang.foreign.MemorySegment buf) {
        return -1;
    }

    /**
     * Sends every request through the page cache from now on (a no-op for backends without
     * O_DIRECT), e.g. because the image's clusters are smaller than {@link DirectIoBackend#ALIGNMENT}.
     */
    default void disableDirect(String reason) {
    }

    /** True when the file was opened read-only. */
    boolean readOnly();

    @Override
    void close() throws IOException;

    /**
     * Where the file's next data extent at or after {@code offset} starts (SEEK_DATA), or the file
     * size when only a hole follows. The default (a backend that cannot tell) says data everywhere.
     */
    default long nextData(long offset) throws IOException {
        return offset;
    }

    /** Where the next hole at or after {@code offset} starts (SEEK_HOLE; the end of the file counts as one). */
    default long nextHole(long offset) throws IOException {
        return Math.max(offset, size());
    }

    /** A run of a file's bytes that holds data or is a hole (reads as zeroes). */
    record Extent(long offset, long length, boolean data) {}

    /** The data and hole runs of [offset, offset+length), consecutive, from {@link #nextData} and {@link #nextHole}. */
    default java.util.List<Extent> extents(long offset, long length) throws IOException {
        java.util.List<Extent> out = new java.util.ArrayList<>();
        long end = offset + length;
        for (long p = offset; p < end; ) {
            long data = Math.min(end, nextData(p));
            if (data > p) {
                out.add(new Extent(p, data - p, false));
                p = data;
                continue;
            }
            long hole = Math.min(end, Math.max(p + 1, nextHole(p)));
            out.add(new Extent(p, hole - p, true));
            p = hole;
        }
        return out;
    }
}
