package io.qblk.faults;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * Passes every call to the wrapped backend and logs each write (offset, bytes), truncate,
 * hole punch (as a write of zeroes) and datasync barrier, with submission and completion order.
 * Events are listed in completion order.
 */
final class RecordingBackend implements IoBackend {
    private final IoBackend inner;
    private final List<IoEvent> log = new ArrayList<>();
    private long clock;
    private boolean recording = true;
    private final List<Long> failures = new ArrayList<>();

    RecordingBackend(IoBackend inner) {
        this.inner = inner;
    }

    synchronized List<IoEvent> log() {
        return List.copyOf(log);
    }

    /** The current position on the event clock. */
    synchronized long clock() {
        return clock;
    }

    synchronized int logSize() {
        return log.size();
    }

    /** Submission ticks of the calls that failed (they are not in the log: nothing reached the disk). */
    synchronized List<Long> failures() {
        return List.copyOf(failures);
    }

    private synchronized void failed(long tick) {
        failures.add(tick);
    }

    synchronized void recording(boolean on) {
        recording = on;
    }

    private synchronized long tick() {
        return clock++;
    }

    private synchronized void add(IoEvent e) {
        if (recording) log.add(e);
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
        add(new IoEvent(IoEvent.Kind.WRITE, offset, copy.length, copy, s, tick()));
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
        add(new IoEvent(IoEvent.Kind.SYNC, 0, 0, null, s, tick()));
    }

    @Override public long size() throws IOException { return inner.size(); }

    @Override
    public void truncate(long length) throws IOException {
        long s = tick();
        try {
            inner.truncate(length);
        } catch (IOException e) {
            failed(s);
            throw e;
        }
        add(new IoEvent(IoEvent.Kind.TRUNCATE, 0, length, null, s, tick()));
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
        if (inner.size() != before) add(new IoEvent(IoEvent.Kind.TRUNCATE, 0, inner.size(), null, s, tick()));
    }

    @Override
    public void punchHole(long offset, long length) throws IOException {
        long s = tick();
        inner.punchHole(offset, length);
        long n = Math.max(0, Math.min(length, inner.size() - offset));
        add(new IoEvent(IoEvent.Kind.WRITE, offset, n, new byte[(int) n], s, tick()));
    }

    @Override public boolean readOnly() { return inner.readOnly(); }

    @Override public void close() throws IOException { inner.close(); }

    @Override public String toString() { return inner.toString(); }
}
