package io.qblk.faults;

/**
 * One recorded backend operation. {@code submit} and {@code complete} are positions on one
 * counter shared by all events: a datasync makes durable exactly the writes whose completion
 * came before the datasync's submission.
 *
 * @param data the written bytes (WRITE), null otherwise; TRUNCATE carries the new length in {@code length}
 */
record IoEvent(Kind kind, long offset, long length, byte[] data, long submit, long complete) {
    enum Kind { WRITE, SYNC, TRUNCATE }

    boolean isSync() {
        return kind == Kind.SYNC;
    }

    int sectors() {
        return kind == Kind.WRITE ? (int) ((length + 511) / 512) : 1;
    }
}
