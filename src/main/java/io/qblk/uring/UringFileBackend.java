package io.qblk.uring;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.ImageLock;
import io.qblk.io.FdBackend;
import io.qblk.io.FileZeroing;
import io.qblk.io.IoBackend;
import io.qblk.io.LibC;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.atomic.LongAdder;

/**
 * {@link IoBackend} whose reads, writes, fdatasync and fallocate go through an io_uring (size and
 * truncate use plain libc calls). Two ways to pick the ring:
 *
 * <ul>
 *   <li>one fixed {@link RingThread} ({@link #open(RingThread, Path, boolean, boolean)}, or a ring of
 *       its own with {@link #open(Path, boolean)});</li>
 *   <li>the caller's ring ({@link #openForCallerRing}): every call submits to the ring bound to the
 *       calling thread by {@link CallerRing#run}. A ublk queue binds its own ring on each tag thread, so
 *       one image shared by several queues sends each queue's data and metadata I/O through that
 *       queue's ring, batched with its ublk commands. I/O that fits in the tag's registered buffer goes
 *       out as READ_FIXED / WRITE_FIXED. A thread without a binding (shutdown flush, recovery, the
 *       service, tests) falls back to pread/pwrite/fdatasync/fallocate on the same descriptor.</li>
 * </ul>
 *
 * Errors come back as {@link ErrnoException} naming the operation, file, offset and errno.
 */
public final class UringFileBackend implements FdBackend {
    private static final long MAX_CHUNK = 1L << 30;

    private final RingThread ring; // null: the caller's ring
    private final CallerRing fixedRoute;
    private final boolean ownsRing;
    /** Caller-ring mode: reads and writes shorter than this use syscalls even on a bound thread. */
    private final long ringMinBytes;
    private final int fd;
    private final ImageLock.Locked locked; // null: a sibling descriptor
    private final Path path;
    private final boolean readOnly;
    private final String name;
    private final LongAdder ringOps = new LongAdder(), fixedOps = new LongAdder(), syscallOps = new LongAdder();
    private volatile boolean closed;

    private UringFileBackend(RingThread ring, boolean ownsRing, ImageLock.Locked locked, Path path, boolean readOnly, long ringMinBytes) {
        this(ring, ownsRing, locked.fd(), locked, path, readOnly, ringMinBytes);
    }

    private UringFileBackend(RingThread ring, boolean ownsRing, int fd, ImageLock.Locked locked, Path path, boolean readOnly, long ringMinBytes) {
        this.ring = ring;
        this.fixedRoute = ring == null ? null : new CallerRing(ring);
        this.ownsRing = ownsRing;
        this.ringMinBytes = ringMinBytes;
        this.fd = fd;
        this.locked = locked;
        this.path = path;
        this.readOnly = readOnly;
        this.name = path.toString();
    }

    /**
     * Opens {@code path} (creating it with mode 0644 when {@code create}) on an existing ring thread.
     * Every open takes the image's {@link ImageLock}, released on close.
     */
    public static UringFileBackend open(RingThread ring, Path path, boolean readOnly, boolean create) throws IOException {
        return new UringFileBackend(ring, false, ImageLock.open(path, readOnly, create, 0), path, readOnly, 0);
    }

    /**
     * Another descriptor of the file {@code first} has open, on {@code ring}, for the same user:
     * {@code first}'s lock covers it (e.g. the O_DIRECT half of a pair). Close it before {@code first}.
     */
    public static UringFileBackend openSibling(RingThread ring, UringFileBackend first) throws IOException {
        if (first.locked == null) throw new IllegalArgumentException(first + " is itself a sibling descriptor");
        int fd = ImageLock.openSibling(first.locked, first.path, first.readOnly, 0);
        return new UringFileBackend(ring, false, fd, null, first.path, first.readOnly, 0);
    }

    /**
     * A second descriptor of {@code first}'s file for the caller's ring (same threshold), covered by
     * {@code first}'s image lock (the O_DIRECT half of a {@link io.qblk.io.DirectIoBackend} pair).
     */
    public static UringFileBackend openSiblingForCallerRing(UringFileBackend first) throws IOException {
        if (first.locked == null) throw new IllegalArgumentException(first + " is itself a sibling descriptor");
        int fd = ImageLock.openSibling(first.locked, first.path, first.readOnly, 0);
        return new UringFileBackend(null, false, fd, null, first.path, first.readOnly, first.ringMinBytes);
    }

    /**
     * Opens {@code path} for I/O through whichever ring the calling thread has bound with
     * {@link CallerRing#run}, with pread/pwrite when none is bound.
     */
    public static UringFileBackend openForCallerRing(Path path, boolean readOnly) throws IOException {
        return openForCallerRing(path, readOnly, 0);
    }

    /**
     * Like {@link #openForCallerRing(Path, boolean)}, but only reads and writes of at least
     * {@code ringMinBytes} go through a bound ring; with a positive threshold, shorter ones and
     * fdatasync/fallocate use syscalls on the calling thread.
     */
    public static UringFileBackend openForCallerRing(Path path, boolean readOnly, long ringMinBytes) throws IOException {
        if (ringMinBytes < 0) throw new IllegalArgumentException("ringMinBytes < 0: " + ringMinBytes);
        return new UringFileBackend(null, false, ImageLock.open(path, readOnly, false, 0), path, readOnly, ringMinBytes);
    }

    /** Opens {@code path} on a ring thread of its own (64 entries), closed together with the file. */
    public static UringFileBackend open(Path path, boolean readOnly) throws IOException {
        RingThread ring = RingThread.start("uring-" + path.getFileName(), RingOptions.defaults().withEntries(64));
        try {
            return new UringFileBackend(ring, true, ImageLock.open(path, readOnly, false, 0), path, readOnly, 0);
        } catch (IOException | RuntimeException e) {
            ring.close();
            throw e;
        }
    }

    @Override
    public int fd() {
        return fd;
    }

    @Override
    public String name() {
        return name;
    }

    /** The fixed ring thread, or null when this backend follows the caller's ring. */
    public RingThread ringThread() {
        return ring;
    }

    /** Operations submitted to an io_uring so far (including {@link #fixedBufferOps()}). */
    public long ringOps() {
        return ringOps.sum();
    }

    /** Reads and writes that went out as READ_FIXED / WRITE_FIXED. */
    public long fixedBufferOps() {
        return fixedOps.sum();
    }

    /** Operations done with plain syscalls because the calling thread had no ring bound. */
    public long syscallOps() {
        return syscallOps.sum();
    }

    /** The ring binding for this call: the fixed ring, the caller's, or null for plain syscalls. */
    private CallerRing route() {
        return ring != null ? fixedRoute : CallerRing.current();
    }

    /** Whether one ring request carries {@code buf} whole: native, not empty, not below the threshold, at most 1 GiB. */
    private boolean oneRingRequest(MemorySegment buf) {
        long n = buf.byteSize();
        return buf.isNative() && n > 0 && n >= ringMinBytes && n <= MAX_CHUNK;
    }

    /** The descriptor, for a read this backend would send to a ring too ({@link #oneRingRequest}). */
    @Override
    public int plainFd(long offset, MemorySegment dst) {
        if (!oneRingRequest(dst)) return -1;
        ringOps.increment();
        return fd;
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        if (!dst.isNative()) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment bounce = a.allocate(dst.byteSize(), 4096);
                read(offset, bounce);
                dst.copyFrom(bounce);
            }
            return;
        }
        transfer(false, offset, dst);
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        if (!src.isNative()) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment bounce = a.allocate(src.byteSize(), 4096);
                bounce.copyFrom(src);
                write(offset, bounce);
            }
            return;
        }
        transfer(true, offset, src);
    }

    /**
     * The writes as one batch on the route's ring ({@link RingThread#executeAll}: one io_uring_enter
     * for up to {@link RingThread#BATCH_SQES} of them, then one wait); short writes are finished one
     * at a time. Writes the ring does not take (heap or short buffers, an unbound caller) go one by
     * one. Throws the first failure, with its errno, after every write has completed.
     */
    @Override
    public void writeAll(java.util.List<Write> writes) throws IOException {
        CallerRing via = writes.size() < 2 ? null : route();
        if (via == null) {
            FdBackend.super.writeAll(writes);
            return;
        }
        RingThread r = via.ring();
        int n = 0;
        UringRequest[] qs = new UringRequest[writes.size()];
        Write[] batched = new Write[writes.size()];
        IOException first = null;
        try {
            for (Write w : writes) {
                MemorySegment src = w.src();
                if (!oneRingRequest(src)) {
                    try {
                        write(w.offset(), src);
                    } catch (IOException e) {
                        if (first == null) first = e;
                    }
                    continue;
                }
                int fixed = via.fixedIndexFor(src);
                UringRequest q = r.acquire();
                if (fixed >= 0) {
                    q.prepWriteFixed(fd, src, w.offset(), fixed);
                    fixedOps.increment();
                } else q.prepWrite(fd, src, w.offset());
                qs[n] = q;
                batched[n++] = w;
            }
            ringOps.add(n);
            if (n > 0) r.executeAll(n == qs.length ? qs : java.util.Arrays.copyOf(qs, n));
            for (int i = 0; i < n; i++) {
                int res = qs[i].result();
                long off = batched[i].offset(), len = batched[i].src().byteSize();
                try {
                    if (res == len) continue;
                    if (res < 0 && -res != Errno.EINTR && -res != Errno.EAGAIN) throw new ErrnoException("write " + name + " at " + off, -res);
                    if (res == 0) throw new ErrnoException("write " + name + " at " + off + " made no progress", Errno.EIO);
                    int done = Math.max(0, res); // short (or interrupted): the rest on its own
                    transfer(true, off + done, batched[i].src().asSlice(done));
                } catch (IOException e) {
                    if (first == null) first = e;
                }
            }
        } finally {
            for (int i = 0; i < n; i++) r.release(qs[i]);
        }
        if (first != null) throw first;
    }

    /** Reads into or writes from {@code buf} at {@code offset}, looping over short transfers. */
    private void transfer(boolean write, long offset, MemorySegment buf) throws IOException {
        CallerRing via = buf.byteSize() < ringMinBytes ? null : route();
        String what = write ? "write " : "read ";
        long done = 0, len = buf.byteSize();
        if (via == null) {
            syscallOps.increment();
            while (done < len) {
                MemorySegment part = buf.asSlice(done);
                long n = write ? LibC.pwrite(fd, part, len - done, offset + done) : LibC.pread(fd, part, len - done, offset + done);
                if (n < 0) {
                    int e = LibC.errno();
                    if (e == Errno.EINTR || e == Errno.EAGAIN) continue;
                    throw new ErrnoException(what + name + " at " + (offset + done), e);
                }
                if (n == 0) {
                    if (write) throw new ErrnoException(what + name + " at " + (offset + done) + " made no progress", Errno.EIO);
                    buf.asSlice(done).fill((byte) 0); // past end of file
                    return;
                }
                done += n;
            }
            return;
        }
        RingThread r = via.ring();
        int fixed = via.fixedIndexFor(buf);
        ringOps.increment();
        if (fixed >= 0) fixedOps.increment();
        UringRequest q = r.acquire();
        try {
            while (done < len) {
                MemorySegment part = done == 0 && len <= MAX_CHUNK ? buf : buf.asSlice(done, Math.min(MAX_CHUNK, len - done));
                if (fixed >= 0) {
                    if (write) q.prepWriteFixed(fd, part, offset + done, fixed);
                    else q.prepReadFixed(fd, part, offset + done, fixed);
                } else {
                    if (write) q.prepWrite(fd, part, offset + done);
                    else q.prepRead(fd, part, offset + done);
                }
                r.execute(q);
                int n = q.result();
                if (n < 0) {
                    if (-n == Errno.EINTR || -n == Errno.EAGAIN) continue;
                    throw new ErrnoException(what + name + " at " + (offset + done), -n);
                }
                if (n == 0) {
                    if (write) throw new ErrnoException(what + name + " at " + (offset + done) + " made no progress", Errno.EIO);
                    buf.asSlice(done).fill((byte) 0); // past end of file
                    return;
                }
                done += n;
            }
        } finally {
            r.release(q);
        }
    }

    @Override
    public void datasync() throws IOException {
        CallerRing via = ringMinBytes > 0 ? null : route(); // with a size threshold (ublk auto): syscall
        if (via == null) {
            syscallOps.increment();
            if (LibC.fdatasync(fd) != 0) throw new ErrnoException("fdatasync " + name, LibC.errno());
            return;
        }
        ringOps.increment();
        RingThread r = via.ring();
        UringRequest q = r.acquire();
        try {
            r.execute(q.prepFsync(fd, true));
            q.checkedResult("fdatasync " + name);
        } finally {
            r.release(q);
        }
    }

    @Override
    public void allocate(long offset, long length) throws IOException {
        if (length == 0) return;
        fallocate(0, offset, length, "fallocate ");
    }

    @Override
    public void punchHole(long offset, long length) throws IOException {
        if (length == 0) return;
        try {
            fallocate(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length, "punch hole ");
        } catch (ErrnoException e) {
            if (e.errno() != Errno.EOPNOTSUPP) throw e;
            // The filesystem cannot punch holes: write zeroes so the range still reads as zero.
            writeZeroBytes(offset, length);
        }
    }

    private void fallocate(int mode, long offset, long length, String what) throws IOException {
        int e = fallocateErrno(mode, offset, length);
        if (e != 0) throw new ErrnoException(what + name + " at " + offset + "+" + length, e);
    }

    /**
     * Makes the range read as zeroes (FALLOC_FL_ZERO_RANGE, or a punched hole plus an allocation) with
     * fallocate through the ring like every other fallocate here, so zeroing never blocks a ring thread
     * that carries the caller; zero bytes written where the file system has neither.
     */
    @Override
    public void zeroRange(long offset, long length) throws IOException {
        if (length == 0) return;
        if (!FileZeroing.zeroRange(this::fallocateErrno, offset, length, name)) writeZeroBytes(offset, length);
    }

    /** One fallocate: through the route's ring, or a syscall (unbound caller, or a size threshold); 0 or the errno. */
    private int fallocateErrno(int mode, long offset, long length) throws IOException {
        CallerRing via = ringMinBytes > 0 ? null : route(); // with a size threshold (ublk auto): syscall
        if (via == null) {
            syscallOps.increment();
            return FileZeroing.syscall(fd, mode, offset, length);
        }
        ringOps.increment();
        RingThread r = via.ring();
        UringRequest q = r.acquire();
        try {
            r.execute(q.prepFallocate(fd, mode, offset, length));
            return q.result() < 0 ? -q.result() : 0;
        } finally {
            r.release(q);
        }
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public synchronized void close() throws IOException {
        if (closed) return;
        closed = true;
        try {
            if (locked != null) locked.close(name);
            else if (LibC.close(fd) != 0) throw new ErrnoException("close " + name, LibC.errno());
        } finally {
            if (ownsRing) ring.close();
        }
    }

    @Override
    public String toString() {
        return name + (ring == null ? " (io_uring of the calling queue)" : " (io_uring)");
    }
}
