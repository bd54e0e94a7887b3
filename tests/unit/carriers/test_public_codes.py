"""Every code in the four launch carriers' files, checked against what the carrier's
public tracking documentation says it means.

Read this table line by line: carrier, code, the carrier's public meaning in words, and
the FleetFlow (status, detail) it must normalise to. Codes with a dot (``SE.WEATHER``)
are FleetFlow qualifiers the ingestion adapters build from the carrier's reason text,
not carrier codes (fleetflow/carriers/README.md, "Codes that need a reason"). How the
public meanings were checked, and the codes whose meaning is ambiguous, are in the same
README under "How the mappings were checked".
"""
import pytest

from fleetflow.carrier_mappings import load_all
from tests.builders import scan
from udfs.events import Scan
from udfs.normalise import NormalisedScan, UNKNOWN_CARRIER_CODE, UnknownCode, normalise
from udfs.taxonomy import Detail as D
from udfs.taxonomy import Status as S

LAUNCH_CARRIERS = ("FEDEX", "UPS", "USPS", "DHL")

# (carrier, public code, public meaning, expected status, expected detail)
PUBLIC_CODES = [
    # FEDEX
    ("FEDEX", "OC", "Order Created: shipment information sent to FedEx", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("FEDEX", "OX", "Shipment information sent to USPS (SmartPost / Ground Economy data)", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("FEDEX", "EP", "Enroute to pickup", S.INFO_RECEIVED, D.PICKUP_SCHEDULED),
    ("FEDEX", "AP", "At pickup", S.INFO_RECEIVED, D.PICKUP_SCHEDULED),
    ("FEDEX", "DS", "Vehicle Dispatched (for the pickup)", S.INFO_RECEIVED, D.PICKUP_SCHEDULED),
    ("FEDEX", "PU", "Picked up", S.IN_TRANSIT, D.PICKED_UP),
    ("FEDEX", "PX", "Picked up (see details)", S.IN_TRANSIT, D.PICKED_UP),
    ("FEDEX", "OF", "At FedEx origin facility", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("FEDEX", "AR", "Arrived at FedEx location", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("FEDEX", "AF", "At local FedEx Facility", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("FEDEX", "FD", "At FedEx Destination", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("FEDEX", "SF", "At sort facility", S.IN_TRANSIT, D.PROCESSING_AT_FACILITY),
    ("FEDEX", "DP", "Departed", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("FEDEX", "LO", "Left Origin", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("FEDEX", "IT", "In transit", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "IX", "In transit (see details)", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "AA", "At airport", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "PF", "Plane in flight", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "PL", "Plane landed", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "EA", "Enroute to Airport (also listed as Export Approved)", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "EO", "Enroute to origin airport", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "PM", "In progress", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "TR", "Transfer (no partner named; not a handover out of FedEx)", S.IN_TRANSIT, D.IN_TRANSIT),
    ("FEDEX", "CP", "Clearance in progress", S.IN_TRANSIT, D.CUSTOMS_PROCESSING),
    ("FEDEX", "CC", "Cleared customs", S.IN_TRANSIT, D.CUSTOMS_CLEARED),
    ("FEDEX", "CH", "Location changed", S.IN_TRANSIT, D.REROUTED),
    ("FEDEX", "AX", "At USPS facility", S.IN_TRANSIT, D.HANDOFF_TO_CARRIER),
    ("FEDEX", "AC", "At Canada Post facility", S.IN_TRANSIT, D.HANDOFF_TO_CARRIER),
    ("FEDEX", "OD", "Out for Delivery (on FedEx vehicle for delivery)", S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    ("FEDEX", "ED", "Enroute to delivery", S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    ("FEDEX", "AD", "At Delivery (courier at the delivery address)", S.OUT_FOR_DELIVERY, D.NEAR_DESTINATION),
    ("FEDEX", "DL", "Delivered", S.DELIVERED, D.DELIVERED),
    ("FEDEX", "DL.NEIGHBOUR", "FleetFlow qualifier: Delivered to a neighbor", S.DELIVERED, D.DELIVERED_TO_NEIGHBOUR),
    ("FEDEX", "DL.SAFE_PLACE", "FleetFlow qualifier: Left at front door", S.DELIVERED, D.DELIVERED_TO_SAFE_PLACE),
    ("FEDEX", "DE", "Delivery Exception (reason only as text; most often customer not available)", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    ("FEDEX", "DE.BUSINESS_CLOSED", "FleetFlow qualifier: Delivery exception: business closed", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_BUSINESS_CLOSED),
    ("FEDEX", "DE.NO_ACCESS", "FleetFlow qualifier: Delivery exception: no access to delivery location", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_NO_ACCESS),
    ("FEDEX", "DE.REFUSED", "FleetFlow qualifier: Delivery exception: refused by recipient", S.EXCEPTION, D.REFUSED),
    ("FEDEX", "DE.ADDRESS", "FleetFlow qualifier: Delivery exception: incorrect address", S.EXCEPTION, D.ADDRESS_ISSUE),
    ("FEDEX", "DD", "Delivery delay", S.EXCEPTION, D.DELAYED),
    ("FEDEX", "DY", "Delay", S.EXCEPTION, D.DELAYED),
    ("FEDEX", "PD", "Pickup delay", S.EXCEPTION, D.DELAYED),
    ("FEDEX", "CD", "Clearance delay", S.EXCEPTION, D.CUSTOMS_HOLD),
    ("FEDEX", "SE", "Shipment exception", S.EXCEPTION, D.OTHER_EXCEPTION),
    ("FEDEX", "SE.WEATHER", "FleetFlow qualifier: Shipment exception: weather delay", S.EXCEPTION, D.WEATHER_DELAY),
    ("FEDEX", "SE.DAMAGED", "FleetFlow qualifier: Shipment exception: package damaged", S.EXCEPTION, D.DAMAGED),
    ("FEDEX", "SE.NOT_FOUND", "FleetFlow qualifier: Shipment exception: package not found", S.EXCEPTION, D.LOST),
    ("FEDEX", "HL", "Hold at location", S.AVAILABLE_FOR_PICKUP, D.AVAILABLE_FOR_PICKUP),
    ("FEDEX", "HP", "Ready for recipient pickup", S.AVAILABLE_FOR_PICKUP, D.AVAILABLE_FOR_PICKUP),
    ("FEDEX", "RS", "Return to Shipper (on its way back)", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("FEDEX", "RS.DL", "FleetFlow qualifier: Delivered back to shipper", S.RETURN_TO_SENDER, D.RETURNED),
    ("FEDEX", "CA", "Shipment Cancelled", S.CANCELLED, D.CANCELLED),
    # UPS
    ("UPS", "NA", "Status type NA: Not Available", S.PENDING, D.AWAITING_INFO),
    ("UPS", "M", "Status type M: Billing Information Received (label created)", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("UPS", "MP", "Status code MP: Order Processed: Ready for UPS", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("UPS", "MV", "Status type MV: Billing Information Voided", S.CANCELLED, D.CANCELLED),
    ("UPS", "P", "Status type P: Pickup", S.IN_TRANSIT, D.PICKED_UP),
    ("UPS", "P.DROP_OFF", "FleetFlow qualifier: Dropped off at a UPS Access Point", S.IN_TRANSIT, D.DROPPED_OFF),
    ("UPS", "OR", "Status code OR: Origin Scan", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("UPS", "AR", "Status code AR: Arrival Scan", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("UPS", "DP", "Status code DP: Departure Scan", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("UPS", "DO", "Status type DO: Delivered Origin CFS (freight only; a container freight station, not the receiver)", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("UPS", "DD", "Status type DD: Delivered Destination CFS (freight only; a container freight station, not the receiver)", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("UPS", "W", "Status type W: Warehousing (freight only)", S.IN_TRANSIT, D.PROCESSING_AT_FACILITY),
    ("UPS", "I", "Status type I: In Transit", S.IN_TRANSIT, D.IN_TRANSIT),
    ("UPS", "I.PROCESSING", "FleetFlow qualifier: Processing at UPS facility", S.IN_TRANSIT, D.PROCESSING_AT_FACILITY),
    ("UPS", "I.CLEARED", "FleetFlow qualifier: Your package was released by the clearing agency", S.IN_TRANSIT, D.CUSTOMS_CLEARED),
    ("UPS", "I.POSTAL", "FleetFlow qualifier: Package transferred to post office for delivery", S.IN_TRANSIT, D.HANDOFF_TO_CARRIER),
    ("UPS", "O", "Status type O: Out for Delivery", S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    ("UPS", "OT", "Status code OT: Out For Delivery Today", S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    ("UPS", "D", "Status type D: Delivered", S.DELIVERED, D.DELIVERED),
    ("UPS", "FS", "Status code FS: Delivered", S.DELIVERED, D.DELIVERED),
    ("UPS", "D.ACCESS_POINT", "FleetFlow qualifier: Delivered to UPS Access Point, awaiting customer pickup", S.AVAILABLE_FOR_PICKUP, D.AVAILABLE_FOR_PICKUP),
    ("UPS", "D.COLLECTED", "FleetFlow qualifier: Picked up by customer at UPS Access Point", S.DELIVERED, D.COLLECTED_BY_RECIPIENT),
    ("UPS", "X", "Status type X: Exception (reason only as text)", S.EXCEPTION, D.OTHER_EXCEPTION),
    ("UPS", "X.RECEIVER_NOT_AVAILABLE", "FleetFlow qualifier: The receiver was not available for delivery; second attempt next business day", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    ("UPS", "X.BUSINESS_CLOSED", "FleetFlow qualifier: The business was closed at the time of delivery", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_BUSINESS_CLOSED),
    ("UPS", "X.NO_ACCESS", "FleetFlow qualifier: Access to the delivery location was restricted", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_NO_ACCESS),
    ("UPS", "X.WEATHER", "FleetFlow qualifier: Severe weather conditions have delayed delivery", S.EXCEPTION, D.WEATHER_DELAY),
    ("UPS", "X.DAMAGED", "FleetFlow qualifier: The package was damaged", S.EXCEPTION, D.DAMAGED),
    ("UPS", "X.CUSTOMS", "FleetFlow qualifier: Held for clearance by the customs agency", S.EXCEPTION, D.CUSTOMS_HOLD),
    ("UPS", "X.ADDRESS", "FleetFlow qualifier: The address is incorrect", S.EXCEPTION, D.ADDRESS_ISSUE),
    ("UPS", "X.REFUSED", "FleetFlow qualifier: The receiver refused the delivery", S.EXCEPTION, D.REFUSED),
    ("UPS", "X.PAYMENT", "FleetFlow qualifier: Duties or charges are due before delivery", S.EXCEPTION, D.PAYMENT_REQUIRED),
    ("UPS", "RS", "Status type RS: Returned to Shipper (read as: return under way)", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("UPS", "RS.DELIVERED", "FleetFlow qualifier: Delivered back to shipper", S.RETURN_TO_SENDER, D.RETURNED),
    # USPS
    ("USPS", "GX", "Shipping Label Created, USPS Awaiting Item", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("USPS", "MA", "Manifest Acknowledgement (pre-shipment info sent to USPS)", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("USPS", "03", "Accept or Pickup (USPS in possession of the item)", S.IN_TRANSIT, D.PICKED_UP),
    ("USPS", "TM", "Truck manifest, shown as Shipment Acceptance", S.IN_TRANSIT, D.PICKED_UP),
    ("USPS", "PA", "Passive Acceptance, shown as Shipment Acceptance", S.IN_TRANSIT, D.PICKED_UP),
    ("USPS", "07", "Arrival at Unit", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("USPS", "A1", "Arrived at USPS Regional Facility", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("USPS", "14", "Arrival at Pickup Point (arrived; 16 says it can be collected)", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("USPS", "41", "Received at Opening Unit", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("USPS", "10", "Processed (through USPS facility)", S.IN_TRANSIT, D.PROCESSING_AT_FACILITY),
    ("USPS", "PC", "Sorting / Processing Complete", S.IN_TRANSIT, D.PROCESSING_AT_FACILITY),
    ("USPS", "L1", "Departed USPS Regional Facility", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("USPS", "EF", "Departed Sort Facility", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("USPS", "SF", "Departed Post Office", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("USPS", "T1", "In Transit to Next Facility", S.IN_TRANSIT, D.IN_TRANSIT),
    ("USPS", "06", "Forwarded", S.IN_TRANSIT, D.REROUTED),
    ("USPS", "42", "USPS Handoff to Shipping Partner", S.IN_TRANSIT, D.HANDOFF_TO_CARRIER),
    ("USPS", "80", "Picked Up by Shipping Partner", S.IN_TRANSIT, D.PICKED_UP),
    ("USPS", "81", "Arrived Shipping Partner Facility", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("USPS", "82", "Departed Shipping Partner Facility", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("USPS", "OF", "Out for Delivery", S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    ("USPS", "59", "Out for Delivery, Expected Delivery by 9:00pm", S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    ("USPS", "01", "Delivered", S.DELIVERED, D.DELIVERED),
    ("USPS", "01.MAILBOX", "FleetFlow qualifier: Delivered, In/At Mailbox", S.DELIVERED, D.DELIVERED_TO_MAILBOX),
    ("USPS", "01.FRONT_DOOR", "FleetFlow qualifier: Delivered, Front Door/Porch", S.DELIVERED, D.DELIVERED_TO_SAFE_PLACE),
    ("USPS", "17", "Picked Up By Agent", S.DELIVERED, D.COLLECTED_BY_RECIPIENT),
    ("USPS", "43", "Picked Up (by the addressee at the Post Office)", S.DELIVERED, D.COLLECTED_BY_RECIPIENT),
    ("USPS", "02", "Attempted / Notice Left", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    ("USPS", "52", "Notice Left", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    ("USPS", "56", "Notice Left: No Authorized Recipient Available", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    ("USPS", "54", "Notice Left: Receptacle Full / Item Oversized", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_NO_SAFE_PLACE),
    ("USPS", "55", "Notice Left: No Secure Location Available", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_NO_SAFE_PLACE),
    ("USPS", "51", "Business Closed", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_BUSINESS_CLOSED),
    ("USPS", "53", "Notice Left: Receptacle Blocked", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_NO_ACCESS),
    ("USPS", "30", "Delivery Attempted - No Access to Delivery Location", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_NO_ACCESS),
    ("USPS", "16", "Available for Pickup", S.AVAILABLE_FOR_PICKUP, D.AVAILABLE_FOR_PICKUP),
    ("USPS", "04", "Refused", S.EXCEPTION, D.REFUSED),
    ("USPS", "05", "Undeliverable as Addressed", S.EXCEPTION, D.ADDRESS_ISSUE),
    ("USPS", "08", "Missent", S.EXCEPTION, D.MISSORTED),
    ("USPS", "15", "Mis-shipped", S.EXCEPTION, D.MISSORTED),
    ("USPS", "71", "Rescheduled to Next Delivery Day", S.EXCEPTION, D.DELAYED),
    ("USPS", "DX", "Delivery Status Not Updated", S.EXCEPTION, D.DELAYED),
    ("USPS", "11", "Dead Letter (undeliverable and unreturnable; sent to the Mail Recovery Center)", S.EXCEPTION, D.OTHER_EXCEPTION),
    ("USPS", "EX.WEATHER", "FleetFlow qualifier: Delivery delayed due to weather", S.EXCEPTION, D.WEATHER_DELAY),
    ("USPS", "EX.DAMAGED", "FleetFlow qualifier: Damaged, item being processed", S.EXCEPTION, D.DAMAGED),
    ("USPS", "EX.CUSTOMS", "FleetFlow qualifier: Held in Customs", S.EXCEPTION, D.CUSTOMS_HOLD),
    ("USPS", "09", "Return to Sender", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "21", "Return to Sender: No Such Number", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "22", "Return to Sender: Insufficient Address", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "23", "Return to Sender: Moved, Left No Address", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "24", "Return to Sender: Forward Expired", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "25", "Return to Sender: Addressee Unknown", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "26", "Return to Sender: Vacant", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "27", "Return to Sender: Unclaimed", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "28", "Return to Sender: Deceased", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "29", "Return to Sender: Other", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "31", "Return to Sender: Not Picked Up", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "44", "Customer Recall", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("USPS", "09.DELIVERED", "FleetFlow qualifier: Delivered to sender", S.RETURN_TO_SENDER, D.RETURNED),
    # DHL
    ("DHL", "PRE-TRANSIT", "Unified Tracking statusCode pre-transit", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("DHL", "TRANSIT", "Unified Tracking statusCode transit", S.IN_TRANSIT, D.IN_TRANSIT),
    ("DHL", "DELIVERED", "Unified Tracking statusCode delivered", S.DELIVERED, D.DELIVERED),
    ("DHL", "FAILURE", "Unified Tracking statusCode failure", S.EXCEPTION, D.OTHER_EXCEPTION),
    ("DHL", "UNKNOWN", "Unified Tracking statusCode unknown", S.PENDING, D.AWAITING_INFO),
    ("DHL", "SD", "Shipment information received", S.INFO_RECEIVED, D.LABEL_CREATED),
    ("DHL", "PU", "Shipment pick up", S.IN_TRANSIT, D.PICKED_UP),
    ("DHL", "SA", "Shipment acceptance (shipper handed it in at a DHL point)", S.IN_TRANSIT, D.DROPPED_OFF),
    ("DHL", "PL", "Processed at location", S.IN_TRANSIT, D.PROCESSING_AT_FACILITY),
    ("DHL", "RW", "Weigh and dimension", S.IN_TRANSIT, D.PROCESSING_AT_FACILITY),
    ("DHL", "AF", "Arrived facility (sort facility)", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("DHL", "CI", "Facility check-in", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("DHL", "AR", "Arrival in delivery facility", S.IN_TRANSIT, D.ARRIVED_AT_FACILITY),
    ("DHL", "DF", "Depart facility", S.IN_TRANSIT, D.DEPARTED_FACILITY),
    ("DHL", "SM", "Scheduled movement", S.IN_TRANSIT, D.IN_TRANSIT),
    ("DHL", "CU", "Confirm uplift (loaded on the flight)", S.IN_TRANSIT, D.IN_TRANSIT),
    ("DHL", "TR", "Record of transfer", S.IN_TRANSIT, D.IN_TRANSIT),
    ("DHL", "RR", "Response received (shown as Customs status updated)", S.IN_TRANSIT, D.CUSTOMS_PROCESSING),
    ("DHL", "IC", "In clearance processing", S.IN_TRANSIT, D.CUSTOMS_PROCESSING),
    ("DHL", "BN", "Customer broker notified", S.IN_TRANSIT, D.CUSTOMS_PROCESSING),
    ("DHL", "CR", "Clearance release (clearance processing complete)", S.IN_TRANSIT, D.CUSTOMS_CLEARED),
    ("DHL", "BR", "Broker release", S.IN_TRANSIT, D.CUSTOMS_CLEARED),
    ("DHL", "TP", "Forwarded to third party (no DHL delivery details)", S.IN_TRANSIT, D.HANDOFF_TO_CARRIER),
    ("DHL", "WC", "With delivery courier", S.OUT_FOR_DELIVERY, D.OUT_FOR_DELIVERY),
    ("DHL", "OK", "Delivery (delivered)", S.DELIVERED, D.DELIVERED),
    ("DHL", "OK.NEIGHBOUR", "FleetFlow qualifier: Delivered to neighbour", S.DELIVERED, D.DELIVERED_TO_NEIGHBOUR),
    ("DHL", "DD", "Delivered damaged", S.DELIVERED, D.DELIVERED),
    ("DHL", "CC", "Awaiting consignee collection", S.AVAILABLE_FOR_PICKUP, D.AVAILABLE_FOR_PICKUP),
    ("DHL", "NH", "Not home", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    ("DHL", "ND", "Not delivered (attempt failed, reason not given)", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_RECIPIENT_ABSENT),
    ("DHL", "CA", "Closed on arrival", S.ATTEMPT_FAIL, D.ATTEMPT_FAILED_BUSINESS_CLOSED),
    ("DHL", "BA", "Bad address", S.EXCEPTION, D.ADDRESS_ISSUE),
    ("DHL", "CM", "Customer moved", S.EXCEPTION, D.ADDRESS_ISSUE),
    ("DHL", "RD", "Refused delivery", S.EXCEPTION, D.REFUSED),
    ("DHL", "MS", "Mis-sort", S.EXCEPTION, D.MISSORTED),
    ("DHL", "MC", "Miscode", S.EXCEPTION, D.MISSORTED),
    ("DHL", "OH", "On hold", S.EXCEPTION, D.HELD_BY_CARRIER),
    ("DHL", "SS", "Shipment stopped", S.EXCEPTION, D.HELD_BY_CARRIER),
    ("DHL", "HP", "Held for payment", S.EXCEPTION, D.PAYMENT_REQUIRED),
    ("DHL", "CD", "Controllable clearance delay", S.EXCEPTION, D.CUSTOMS_HOLD),
    ("DHL", "UD", "Uncontrollable clearance delay", S.EXCEPTION, D.CUSTOMS_HOLD),
    ("DHL", "TD", "Transport delay", S.EXCEPTION, D.DELAYED),
    ("DHL", "MD", "Missed delivery cycle (no attempt made)", S.EXCEPTION, D.DELAYED),
    ("DHL", "NA", "Not arrived (expected at a facility, did not arrive)", S.EXCEPTION, D.DELAYED),
    ("DHL", "TD.WEATHER", "FleetFlow qualifier: Transport delay due to weather", S.EXCEPTION, D.WEATHER_DELAY),
    ("DHL", "DM", "Damaged", S.EXCEPTION, D.DAMAGED),
    ("DHL", "RT", "Returned to consignor (read as: return under way)", S.RETURN_TO_SENDER, D.RETURN_TO_SENDER),
    ("DHL", "RT.OK", "FleetFlow qualifier: Delivered back to shipper", S.RETURN_TO_SENDER, D.RETURNED),
]

# Public codes left unmapped on purpose: they say nothing about where the parcel is, or
# they could pull a shipment's status backwards (README, "How the mappings were checked").
# They dead-letter as UNKNOWN_CARRIER_CODE and raise one CARRIER_ONBOARDING alert each.
DELIBERATELY_UNMAPPED = [
    ("FEDEX", "RR", "CDO requested (delivery option requested by the recipient)"),
    ("FEDEX", "RM", "CDO modified"),
    ("FEDEX", "RC", "CDO cancelled"),
    ("FEDEX", "RP", "Return label link emailed to return sender"),
    ("FEDEX", "SP", "Split status (multi-piece shipment)"),
    ("FEDEX", "AO", "Shipment arriving on-time"),
    ("DHL", "IA", "Image available"),
    ("DHL", "SC", "Service changed"),
]


@pytest.fixture(scope="module")
def mappings():
    return load_all()


def _row_id(row):
    return f"{row[0]}-{row[1]}"


@pytest.mark.parametrize("carrier, code, meaning, status, detail", PUBLIC_CODES, ids=[_row_id(r) for r in PUBLIC_CODES])
def test_public_code_normalises_to_its_public_meaning(mappings, carrier, code, meaning, status, detail):
    out = normalise(mappings, Scan.from_record(scan(raw_code=code, carrier=carrier)))
    assert isinstance(out, NormalisedScan), f"{carrier} {code} ({meaning}) is not mapped"
    assert (out.status, out.detail) == (status, detail), f"{carrier} {code} means: {meaning}"


@pytest.mark.parametrize("carrier", LAUNCH_CARRIERS)
def test_the_table_lists_every_code_in_the_carrier_file_and_nothing_else(mappings, carrier):
    in_table = [code for c, code, *_ in PUBLIC_CODES if c == carrier]
    assert len(in_table) == len(set(in_table)), "a code is listed twice"
    assert set(in_table) == set(mappings[carrier].codes)


@pytest.mark.parametrize("carrier, code, meaning", DELIBERATELY_UNMAPPED,
                         ids=[f"{c}-{k}" for c, k, _ in DELIBERATELY_UNMAPPED])
def test_deliberately_unmapped_public_code_dead_letters_instead_of_being_guessed(mappings, carrier, code, meaning):
    out = normalise(mappings, Scan.from_record(scan(raw_code=code, carrier=carrier)))
    assert isinstance(out, UnknownCode) and out.reason == UNKNOWN_CARRIER_CODE, meaning
