package io.qblk.qcow2;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Decides whether a backing file named in an image header may be opened. The name is untrusted
 * input: a service that confines images to some directories must confine their backing files too.
 */
@FunctionalInterface
public interface BackingPolicy {

    /**
     * @param name     the backing file name exactly as the header gives it
     * @param resolved that name resolved against the image's directory
     * @return the path to open
     * @throws IOException (usually {@link Qcow2Exception}) saying why the file is refused
     */
    Path admit(String name, Path resolved) throws IOException;

    /** Opens whatever the header names, like qemu-img. */
    BackingPolicy ANY = (name, resolved) -> resolved;
}
