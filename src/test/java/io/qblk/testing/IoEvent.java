package io.qblk.testing;

import java.io.IOException;

/**
 * One recorded backend operation. {@code submit} and {@code complete} are positions on one
 * counter shared by all events: a datasync makes durable exactly the writes whose completion
 * came before the datasync's submission.
 *
 * @param data the written bytes (WRITE), null otherwise; TRUNCATE carries the new length in {@code length}
 *             and the file's length before it in {@code offset}
 */
public record IoEvent(Kind kind, long offset, long length, byte[] data, long submit, long complete) {
    public enum Kind { WRITE, SYNC, TRUNCATE }

    public boolean isSync() {
        return kind == Kind.SYNC;
    }

    /** 512-byte sectors a write covers (the unit it may tear at); 1 for the others. */
    public int sectors() {
        return kind == Kind.WRITE ? (int) ((length + 511) / 512) : 1;
    }

    /**
     * Lets this event reach {@code m}: a write lands whole; a truncate that grew the file only grows
     * it (a crash keeps the longer file); one that shrank the file cuts it.
     */
    public void applyTo(MemoryBackend m) throws IOException {
        switch (kind) {
            case WRITE -> m.put(offset, data, 0, (int) length);
            case TRUNCATE -> { if (length > m.size() || (length < offset && length < m.size())) m.truncate(length); }
            case SYNC -> {}
        }
    }

    /** A torn write: only the 512-byte sectors {@code keep} marks land. */
    public void applySectors(MemoryBackend m, boolean[] keep) throws IOException {
        for (int s = 0; s < keep.length; s++) {
            if (!keep[s]) continue;
            int off = s * 512, len = (int) Math.min(512, length - off);
            m.put(offset + off, data, off, len);
        }
    }
}
