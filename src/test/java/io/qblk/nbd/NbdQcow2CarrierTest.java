package io.qblk.nbd;

/** {@link NbdQcow2Test} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdQcow2CarrierTest extends NbdQcow2Test {
    @Override
    NbdServer.Options variant(NbdServer.Options o) {
        return o.withCarrier(true);
    }

    @Override
    io.qblk.target.FileIo fileIo() {
        return io.qblk.target.FileIo.CALLER_RING;
    }
}
