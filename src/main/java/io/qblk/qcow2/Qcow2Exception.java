package io.qblk.qcow2;

import java.io.IOException;

/** A qcow2 format problem: bad header, corrupt metadata, or a feature this engine does not support (the message says which). */
public class Qcow2Exception extends IOException {
    public Qcow2Exception(String message) {
        super(message);
    }

    public Qcow2Exception(String message, Throwable cause) {
        super(message, cause);
    }
}
