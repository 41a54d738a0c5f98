package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Whether the image may be changed, and the header feature bits that record it: opened read-only,
 * refused (corrupt bit, snapshots), poisoned by a failed datasync, or in repair by check. Sets the
 * corrupt bit when corruption is found, clears it after a clean repair, and clears unknown
 * autoclear bits before the first change (never on an open that only reads).
 */
final class WriteGuard {
    private final String filename;
    private final Qcow2Header h;
    private final IoBackend file;
    private final MetadataCache cache;
    private final boolean openedReadOnly;
    private volatile String writeRefusal;
    private volatile IOException poisoned;
    /** Set while check repairs an image: metadata may be written although the image is marked corrupt. */
    private volatile boolean repairing;
    /** Autoclear bits to clear in the header before the first change of the image. */
    private volatile boolean autoclearPending;
    private long keptAutoclear;
    /** Bitmaps to mark in use before the first change (rule B1). */
    private volatile boolean bitmapsPending;
    private Bitmaps bitmaps;
    /** Lazy refcounts wanted on this open: the dirty bit is set (and synced) before the first change (rule L1). */
    private volatile boolean lazy;
    private volatile boolean dirtyPending;
    /** The dirty bit is durable: a commit may leave refcount blocks unwritten (rule L1). */
    private volatile boolean lazyActive;
    private volatile boolean closed;

    WriteGuard(String filename, Qcow2Header h, IoBackend file, MetadataCache cache, boolean openedReadOnly) {
        this.filename = filename;
        this.h = h;
        this.file = file;
        this.cache = cache;
        this.openedReadOnly = openedReadOnly;
    }

    boolean openedReadOnly() { return openedReadOnly; }

    boolean closed() { return closed; }

    void markClosed() { closed = true; }

    boolean readOnly() { return openedReadOnly || writeRefusal != null; }

    boolean corruptBit() { return (h.incompatible & Qcow2Header.INCOMPAT_CORRUPT) != 0; }

    /** Refuses every change from now on, with {@code reason}. */
    void refuse(String reason) { writeRefusal = reason; }

    /** Why an image opened for writing refuses writes, or null. */
    String writeRefusal() { return writeRefusal; }

    /** True when no metadata may be written now: refused, and not repairing. */
    boolean metadataFrozen() { return writeRefusal != null && !repairing; }

    void setRepairing(boolean r) { repairing = r; }

    void checkWritable() throws IOException {
        if (openedReadOnly) throw new Qcow2Exception(Qcow2Exception.Kind.READ_ONLY, filename + ": image is opened read-only");
        String r = writeRefusal;
        if (r != null) throw new Qcow2Exception(Qcow2Exception.Kind.READ_ONLY, r);
        checkNotPoisoned();
    }

    void checkNotPoisoned() throws IOException {
        IOException p = poisoned;
        if (p != null) throw new IOException(filename + ": an earlier flush failed (" + p.getMessage() + "); reopen the image", p);
    }

    /** A datasync failed: the on-disk state is unknown, nothing more is written (docs/ordering.md, "Failures"). */
    void poison(IOException e) { poisoned = e; }

    boolean poisoned() { return poisoned != null; }

    /**
     * Read-write open: autoclear bits other than {@code keep} (the ones we maintain: bitmaps, when
     * they loaded) are cleared before the first change, and {@code bitmaps} are marked in use then
     * (rule B1); an open that only reads never writes either.
     */
    void prepareFirstChange(long keep, Bitmaps bitmaps, boolean lazy) {
        this.keptAutoclear = keep;
        this.bitmaps = bitmaps;
        if (h.version >= 3 && (h.autoclear & ~keep) != 0) autoclearPending = true;
        if (!bitmaps.trackedNames().isEmpty()) bitmapsPending = true;
        this.lazy = lazy && h.version >= 3 && (h.compatible & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0;
        dirtyPending = this.lazy;
    }

    /**
     * True once the dirty bit of a lazy-refcounts image is durable (rule L1): from then on a
     * write-through commit may leave dirty refcount blocks in the cache.
     */
    boolean lazyActive() { return lazyActive; }

    /**
     * Called before anything changes the image (a write, zero, discard, repair): clears the
     * autoclear bits we do not maintain (unknown ones, and bitmaps that did not load) in the header,
     * synced, marks the tracked bitmaps in use (synced), and on a lazy-refcounts open sets the
     * dirty bit (synced, rule L1), once.
     */
    void beforeChange() throws IOException {
        if (!autoclearPending && !bitmapsPending && !dirtyPending) return;
        synchronized (this) {
            if (autoclearPending || dirtyPending) {
                h.autoclear &= keptAutoclear;
                if (dirtyPending) h.incompatible |= Qcow2Header.INCOMPAT_DIRTY;
                writeFeatureBits();
                autoclearPending = false;
                if (dirtyPending) lazyActive = true; // L1: only after the synced write
                dirtyPending = false;
            }
            if (bitmapsPending) {
                bitmaps.markInUse();
                bitmapsPending = false;
            }
        }
    }

    /** Sets the corrupt bit (version 3; best effort), refuses further writes, and returns the exception to throw. */
    Qcow2Exception corrupted(MetadataCorruption c) {
        if (!openedReadOnly && writeRefusal == null) {
            writeRefusal = filename + ": image is marked corrupt (" + c.getMessage() + ")";
            if (h.version >= 3) {
                cache.lock();
                try {
                    h.incompatible |= Qcow2Header.INCOMPAT_CORRUPT;
                } finally {
                    cache.unlock();
                }
                try {
                    writeFeatureBits();
                } catch (IOException ignored) {
                    // the write refusal above still protects the image in this process
                }
            }
        }
        return new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, filename + ": corrupt image: " + c.getMessage(), c);
    }

    /** Called by check after a successful repair of a corrupt image: writes become possible again. */
    void clearCorrupt() throws IOException {
        if (!corruptBit() && writeRefusal == null) return;
        h.incompatible &= ~Qcow2Header.INCOMPAT_CORRUPT;
        writeFeatureBits();
        if (h.nbSnapshots == 0) writeRefusal = null;
    }

    /**
     * Clears the dirty bit (synced) once every refcount on disk is right: after the repair of a dirty
     * image, or at close after the full flush that wrote every refcount block a lazy commit left
     * (rule L2). With {@code rearm}, a lazy open sets it again before its next change.
     */
    synchronized void clearDirty(boolean rearm) throws IOException {
        lazyActive = false;
        h.incompatible &= ~Qcow2Header.INCOMPAT_DIRTY;
        writeFeatureBits();
        dirtyPending = lazy && rearm;
    }

    /** Writes the incompatible/compatible/autoclear feature fields (offset 72) and syncs them. */
    synchronized void writeFeatureBits() throws IOException {
        if (h.version < 3) return;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(24, 512);
            s.copyFrom(MemorySegment.ofArray(h.featureBytes()));
            file.write(72, s);
            file.datasync();
        }
    }
}
