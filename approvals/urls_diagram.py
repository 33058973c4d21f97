"""Routes of the diagram viewer's data: the BPMN XML of an instance's or a definition's diagram."""
from django.urls import path

from . import views_instance

urlpatterns = [
    path("instances/<int:pk>/diagram.bpmn", views_instance.instance_diagram_xml, name="instance_diagram_xml"),
    path("definitions/<int:pk>/diagram.bpmn", views_instance.definition_diagram_xml, name="definition_diagram_xml"),
]
