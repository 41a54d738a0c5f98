package io.qblk.nbd;

/** {@link NbdClientsTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdClientsCarrierTest extends NbdClientsTest {
    @Override
    NbdServer.Options variant(NbdServer.Options o) {
        return o.withCarrier(true);
    }

    @Override
    io.qblk.io.IoBackend openFile(java.nio.file.Path p) throws java.io.IOException {
        return io.qblk.uring.UringFileBackend.openForCallerRing(p, false);
    }
}
