package io.qblk.uring;

import java.io.IOException;

/** The ring thread is closed (or closing): the operation was not performed. */
public class RingClosedException extends IOException {
    public RingClosedException(String message) {
        super(message);
    }
}
