package io.qblk.testing;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Passes every call to the wrapped backend and reports each write (offset, bytes), truncate or
 * growing allocation, hole punch (as a write of zeroes) and datasync barrier as an {@link IoEvent},
 * with submission and completion order, to a sink: by default its own log, listed in completion
 * order; or e.g. a {@link PowerCut}. Calls that fail are not events (nothing reached the disk); their
 * submission ticks are kept in {@link #failures()}.
 */
public final class RecordingBackend implements IoBackend {
    private final IoBackend inner;
    private final List<IoEvent> log = new ArrayList<>();
    private final Consumer<IoEvent> sink;
    private final List<Long> failures = new ArrayList<>();
    private long clock;
    private boolean recording = true;
    private volatile boolean offerPlainFd;

    /**
     * From now on {@link #plainFd} answers 0 instead of -1, so the engine plans reads and writes
     * ({@link io.qblk.io.FilePlan}); there is no descriptor: the caller transfers through
     * {@link io.qblk.io.FilePlan#file()}, which is this backend, so the transfer is recorded.
     */
    public RecordingBackend offerPlainFd() {
        offerPlainFd = true;
        return this;
    }

    @Override
    public int plainFd(long offset, MemorySegment buf) {
        return offerPlainFd ? 0 : -1;
    }

    /** Records into {@link #log()}. */
    public RecordingBackend(IoBackend inner) {
        this.inner = inner;
        this.sink = log::add;
    }

    /** Hands every event to {@code sink} (called in completion order, under this backend's lock). */
    public RecordingBackend(IoBackend inner, Consumer<IoEvent> sink) {
        this.inner = inner;
        this.sink = sink;
    }

    public synchronized List<IoEvent> log() {
        return List.copyOf(log);
    }

    /** How many events {@link #log()} holds. */
    public synchronized int logSize() {
        return log.size();
    }

    /** The current position on the event clock. */
    public synchronized long clock() {
        return clock;
    }

    /** Submission ticks of the calls that failed. */
    public synchronized List<Long> failures() {
        return List.copyOf(failures);
    }

    private synchronized void failed(long tick) {
        failures.add(tick);
    }

    private synchronized long tick() {
        return clock++;
    }

    /** Stops (false) or resumes handing events to the sink; the clock runs on either way. */
    public synchronized void recording(boolean on) {
        recording = on;
    }

    private synchronized void add(IoEvent.Kind kind, long offset, long length, byte[] data, long submit) {
        IoEvent e = new IoEvent(kind, offset, length, data, submit, clock++);
        if (recording) sink.accept(e);
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        inner.read(offset, dst);
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        long s = tick();
        byte[] copy = src.toArray(ValueLayout.JAVA_BYTE);
        try {
            inner.write(offset, src);
        } catch (IOException e) {
            failed(s);
            throw e;
        }
        add(IoEvent.Kind.WRITE, offset, copy.length, copy, s);
    }

    @Override
    public void datasync() throws IOException {
        long s = tick();
        try {
            inner.datasync();
        } catch (IOException e) {
            failed(s);
            throw e;
        }
        add(IoEvent.Kind.SYNC, 0, 0, null, s);
    }

    @Override public long size() throws IOException { return inner.size(); }

    @Override
    public void truncate(long length) throws IOException {
        long s = tick();
        long before = inner.size();
        try {
            inner.truncate(length);
        } catch (IOException e) {
            failed(s);
            throw e;
        }
        add(IoEvent.Kind.TRUNCATE, before, length, null, s);
    }

    @Override
    public void allocate(long offset, long length) throws IOException {
        long s = tick();
        long before = inner.size();
        try {
            inner.allocate(offset, length);
        } catch (IOException e) {
            failed(s);
            throw e;
        }
        if (inner.size() != before) add(IoEvent.Kind.TRUNCATE, 0, inner.size(), null, s);
    }

    @Override
    public void punchHole(long offset, long length) throws IOException {
        long s = tick();
        inner.punchHole(offset, length);
        long n = Math.max(0, Math.min(length, inner.size() - offset));
        add(IoEvent.Kind.WRITE, offset, n, zeros((int) n), s);
    }

    /**
     * A shared all-zero array of at least {@code n} bytes for punch events (their readers use
     * {@code length}, never the array's size, and never write it): with 2 MiB clusters a run
     * punches many clusters, and a fresh array per punch held by every kept log exhausted the heap.
     */
    private static byte[] zeros(int n) {
        byte[] z = sharedZeros;
        if (z.length < n) sharedZeros = z = new byte[Math.max(n, 2 * z.length)];
        return z;
    }

    private static volatile byte[] sharedZeros = new byte[1 << 16];

    @Override public boolean readOnly() { return inner.readOnly(); }

    @Override public void close() throws IOException { inner.close(); }

    @Override public String toString() { return inner.toString(); }
}
