package io.qblk.qcow2;

/** Corrupt metadata detected while running: the image gets its corrupt bit set, then this is thrown. */
final class MetadataCorruption extends Qcow2Exception {
    MetadataCorruption(String message) {
        super(Kind.CORRUPT, message);
    }
}
