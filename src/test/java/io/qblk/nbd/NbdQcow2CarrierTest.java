package io.qblk.nbd;

/** {@link NbdQcow2Test} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdQcow2CarrierTest extends NbdQcow2Test implements NbdVariant.OnCarrier {
}
